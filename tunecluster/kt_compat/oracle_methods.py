"""Cheaper per-call work for the Keras Tuner oracle that the chief serves, with the same results.

Keras Tuner's oracle repeats work on every call that grows with the search or could be skipped:
- `_check_consecutive_failures` walks every ended trial on each EndTrial (O(trials));
- `get_best_trials` sorts every trial on each call (O(trials log trials));
- `_random_values` registers a copy of each hyperparameter in a scratch `HyperParameters` just to
  ask whether its conditions hold (about 2 ms per trial for the 32-hyperparameter Pima space);
- `_save_trial` rewrites the trial's trial.json on CreateTrial, on each UpdateTrial and on
  EndTrial (a temporary file, a rename and a directory check each time), under the oracle's lock;
- `_get_trial_dir` looks the trial's folder up (and makes it) on every call.

`install` replaces these on one oracle instance (Keras Tuner calls them as `self.<name>`), each
with an equivalent that keeps the same results: the same failure stop and message, the same best
trials in the same order (ties by creation, as Keras Tuner's stable sort), the same random draws
from the same seed, and every ended trial's state on disk before its EndTrial returns (a line of
the project's journal; its trial.json follows from the chief's state writer within about half a
second, always before oracle.json, see `Chief.flush_oracle`, and a restarted chief replays the
journal first). Tests compare each one with Keras Tuner's own method.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import threading
from typing import Callable, Optional


class ConsecutiveFailures:
    """`_check_consecutive_failures`, reading each ended trial once instead of all on every call."""

    def __init__(self, oracle):
        self.oracle = oracle
        self._scanned = 0
        self._run = 0
        self._tripped = None  # the trial at which the run of failures reached the limit

    def __call__(self) -> None:
        oracle = self.oracle
        order = oracle.end_order
        if len(order) < self._scanned:  # replaced (a reload): read it again from the start
            self._scanned, self._run, self._tripped = 0, 0, None
        for trial_id in order[self._scanned:]:  # (an islice would walk the scanned ones again)
            trial = oracle.trials[trial_id]
            self._run = self._run + 1 if trial.status == "FAILED" else 0
            if self._run == oracle.max_consecutive_failed_trials and self._tripped is None:
                self._tripped = trial
        self._scanned = len(order)
        if self._tripped is not None:
            raise RuntimeError(
                "Number of consecutive failures exceeded the limit "
                f"of {oracle.max_consecutive_failed_trials}.\n" + (self._tripped.message or "")
            )


class BestTrials:
    """`get_best_trials`: completed trials kept ranked as they end, instead of sorted per call."""

    def __init__(self, oracle, original: Callable):
        self.oracle = oracle
        self.original = original
        self._trials_dict = None
        self._rank: dict[str, int] = {}  # creation order, Keras Tuner's tie-break
        self._ranked: list[tuple] = []  # (sort key, creation rank, trial id)
        self._seen = 0  # end_order entries read

    def _creation_rank(self, trial_id: str) -> int:
        trials = self.oracle.trials
        if trial_id not in self._rank:
            unranked = []  # the trials created since the last ranked one, newest first
            for known in reversed(trials):
                if known in self._rank:
                    break
                unranked.append(known)
            for known in reversed(unranked):
                self._rank[known] = len(self._rank)
        return self._rank.get(trial_id, len(trials))

    def _key(self, trial) -> tuple:
        score = trial.score
        return (-score if self.oracle.objective.direction == "max" else score,
                self._creation_rank(trial.trial_id), trial.trial_id)

    def _rebuild(self) -> None:
        oracle = self.oracle
        self._trials_dict = oracle.trials
        self._rank = {trial_id: index for index, trial_id in enumerate(oracle.trials)}
        self._ranked = sorted(self._key(t) for t in list(oracle.trials.values())
                              if t.status == "COMPLETED" and t.score is not None)
        self._seen = len(oracle.end_order)

    def _ranking(self) -> list[tuple]:
        oracle = self.oracle
        if oracle.trials is not self._trials_dict or len(oracle.end_order) < self._seen:
            self._rebuild()
            return self._ranked
        for trial_id in oracle.end_order[self._seen:]:
            trial = oracle.trials.get(trial_id)
            if trial is not None and trial.status == "COMPLETED" and trial.score is not None:
                key = self._key(trial)
                index = bisect.bisect_left(self._ranked, key)
                if index >= len(self._ranked) or self._ranked[index] != key:
                    self._ranked.insert(index, key)
        self._seen = len(oracle.end_order)
        return self._ranked

    def __call__(self, num_trials: int = 1):
        oracle = self.oracle
        if getattr(oracle.objective, "direction", None) not in ("max", "min"):
            return self.original(num_trials)  # a multi-objective: Keras Tuner's own
        ranked = self._ranking()
        if len(ranked) < num_trials:
            return self.original(num_trials)  # it pads with unfinished trials
        best = [oracle.trials.get(entry[2]) for entry in ranked[:num_trials]]
        if any(t is None or t.status != "COMPLETED" or t.score is None for t in best) or any(
            self._key(t) != entry for t, entry in zip(best, ranked)
        ):
            self._rebuild()  # something changed a ranked trial behind our back: sort again
            return self.original(num_trials)
        return best


def random_values(oracle) -> Callable[[], dict | None]:
    """`_random_values`: the same draws (same hyperparameters, same order, same seed steps) without
    registering a copy of each hyperparameter to test its conditions."""

    def _random_values():
        collisions = 0
        while True:
            values: dict = {}
            for hp in oracle.hyperparameters.space:
                if all(condition.is_active(values) for condition in hp.conditions):
                    values[hp.name] = hp.random_sample(oracle._seed_state)
                    oracle._seed_state += 1
            if oracle._duplicate(values):
                collisions += 1
                if collisions > oracle._max_collisions:
                    return None
                continue
            return values

    return _random_values


JOURNAL = "trials.journal"  # <project>/trials.journal.<n>: ended trials' states, one JSON line each


class TrialWrites:
    """`_save_trial` without files on the call's path. Creating a file is slow on real volumes
    (here ~0.3 ms per new file and folder, far more on network storage), and Keras Tuner did it
    under the oracle's lock on every CreateTrial, UpdateTrial and EndTrial.

    - A new trial's first state, an ended trial's state (and a retried trial's new start) are
      appended to the project's journal, one line, before the call returns: what the chief
      handed out and acknowledged survives the chief (the page cache holds it; as before, no
      fsync). The chief replays the journal into the trial.json files when it starts
      (`replay_journals`).
    - Every trial's trial.json is then written by the chief's state writer (`capture`, `write`),
      at most ~0.5 s later, before oracle.json; the writer starts a new journal file at each
      capture and deletes the old one once the files it covered are written (`retire`).

    States are versioned per trial; a write takes the newest captured state of each trial, so an
    older running state never lands on top of its ended one."""

    def __init__(self, oracle, lock_of: Callable):
        self.oracle = oracle
        self.lock_of = lock_of  # a context manager holding the oracle's lock
        self._dirty: dict[str, object] = {}  # running trials, captured by the writer
        self._journaled: dict[str, tuple[int, str]] = {}  # trial id -> (version, JSON text)
        self._versions: dict[str, int] = {}  # trial id -> the latest state's number
        self._ended: set[str] = set()  # trials that ended once (a new start of one is journaled)
        self._guard = threading.Lock()
        self._journal_fd: Optional[int] = None
        self._journal_path: Optional[str] = None

    def _path(self, trial_id: str) -> str:
        # (not `_get_trial_dir`: it makes the folder; `write_atomic` makes it when it writes)
        return os.path.join(self.oracle._project_dir, f"trial_{trial_id}", "trial.json")

    def __call__(self, trial) -> None:
        trial_id = trial.trial_id
        with self._guard:
            new = trial_id not in self._versions
            version = self._versions[trial_id] = self._versions.get(trial_id, 0) + 1
            if trial.status == "RUNNING" and not new and trial_id not in self._ended:
                self._dirty[trial_id] = trial  # a running trial's progress: the writer's
                return
            # its creation (Keras Tuner numbers trials by their count: a trial a restarted
            # chief did not know would leave a gap, and the next new trial would take the id
            # of a known one), its end, or a new start after an end
            if trial.status != "RUNNING":
                self._ended.add(trial_id)
            self._dirty.pop(trial_id, None)
            text = json.dumps(trial.get_state())
            self._append(f'{{"trial_id": {json.dumps(trial_id)}, "state": {text}}}\n')
            self._journaled[trial_id] = (version, text)

    def _append(self, line: str) -> None:
        if self._journal_fd is None:
            self._open_journal()
        data = line.encode()
        while data:  # one write for a line (an O_APPEND write is not split by other writers)
            data = data[os.write(self._journal_fd, data):]

    def _open_journal(self) -> None:
        project = self.oracle._project_dir
        os.makedirs(project, exist_ok=True)
        number = max([n for _, n in journals(project)], default=0) + 1
        self._journal_path = os.path.join(project, f"{JOURNAL}.{number}")
        self._journal_fd = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def pending(self) -> int:
        with self._guard:
            return len(self._dirty) + len(self._journaled)

    def capture(self, locked: bool = False) -> list[tuple[str, int, str, str]]:
        """The running trials marked since the last capture as (trial id, version, path, JSON
        text), each read under the oracle's lock (or with it already held: `locked`)."""
        with self._guard:
            dirty, self._dirty = self._dirty, {}
        texts = []
        for trial_id, trial in dirty.items():
            with (contextlib.nullcontext() if locked else self.lock_of()):
                with self._guard:
                    if trial.status != "RUNNING":
                        continue  # ended since: its journaled state is newer
                    version = self._versions.get(trial_id, 0)
                    texts.append((trial_id, version, self._path(trial_id), json.dumps(trial.get_state())))
        return texts

    def take_journaled(self) -> tuple[list[tuple[str, int, str, str]], Optional[str]]:
        """The journaled states not written to their trial.json yet, and the journal file that
        holds them; later states go to a new journal file. `retire` that file once they are written."""
        with self._guard:
            taken, self._journaled = self._journaled, {}
            old_fd, old_path = self._journal_fd, self._journal_path
            self._journal_fd = self._journal_path = None  # the next line opens a new file
        if old_fd is not None:
            os.close(old_fd)
        return [(t, v, self._path(t), text) for t, (v, text) in taken.items()], old_path

    def write(self, texts: list[tuple[str, int, str, str]]) -> None:
        """Write each trial's newest captured state among `texts` (the state writer's thread)."""
        from tunecluster.core.rundir import write_atomic

        newest: dict[str, tuple[int, str, str]] = {}
        for trial_id, version, path, text in texts:
            if trial_id not in newest or version > newest[trial_id][0]:
                newest[trial_id] = (version, path, text)
        for trial_id, (version, path, text) in newest.items():
            with self._guard:
                superseded = self._versions.get(trial_id, 0) > version and trial_id in self._journaled
            if not superseded:  # (a newer journaled state is written at the next capture)
                write_atomic(path, text, fsync=False)

    @staticmethod
    def retire(path: Optional[str]) -> None:
        """A journal file whose states are all in trial.json files now."""
        if path:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


def journals(project: str) -> list[tuple[str, int]]:
    """The project's journal files as (path, number), oldest first."""
    try:
        names = os.listdir(project)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        stem, _, number = name.rpartition(".")
        if stem == JOURNAL and number.isdigit():
            found.append((os.path.join(project, name), int(number)))
    return sorted(found, key=lambda item: item[1])


def replay_journals(project: str) -> int:
    """Write the journaled states of a chief that stopped before its writer wrote them into
    their trial.json files (in order: the last line of a trial wins), then drop the journals.
    Returns the number of lines replayed. A torn last line (a machine crash) is skipped."""
    from tunecluster.core.rundir import write_atomic

    latest: dict[str, dict] = {}
    files = journals(project)
    for path, _ in files:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    latest[str(entry["trial_id"])] = entry["state"]
                except (ValueError, KeyError, TypeError):
                    continue
    for trial_id, state in latest.items():
        write_atomic(os.path.join(project, f"trial_{trial_id}", "trial.json"), json.dumps(state), fsync=False)
    for path, _ in files:
        os.remove(path)
    return len(latest)


def trial_dirs(oracle) -> Callable[[str], str]:
    """`_get_trial_dir`: Keras Tuner checks for (and makes) the trial's folder on every call,
    several per trial; a folder it made or found once is not looked up again."""
    original = oracle._get_trial_dir
    known: set[str] = set()

    def _get_trial_dir(trial_id):
        if trial_id in known:
            return os.path.join(oracle._project_dir, f"trial_{trial_id}")
        path = original(trial_id)
        known.add(trial_id)
        return path

    return _get_trial_dir


def install(oracle, lock_of: Callable) -> TrialWrites:
    """Put the equivalents on `oracle`; returns the trial writer the chief flushes."""
    oracle._get_trial_dir = trial_dirs(oracle)
    oracle._check_consecutive_failures = ConsecutiveFailures(oracle)
    oracle.get_best_trials = BestTrials(oracle, oracle.get_best_trials)
    if type(oracle)._random_values is _kt_random_values():
        oracle._random_values = random_values(oracle)
    writes = TrialWrites(oracle, lock_of)
    oracle._save_trial = writes
    return writes


def _kt_random_values():
    from keras_tuner.src.engine import oracle as oracle_module

    return oracle_module.Oracle._random_values
