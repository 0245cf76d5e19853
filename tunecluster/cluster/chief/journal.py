"""The chief's trial journal: every trial's state on disk without a file write on a call's path.

Keras Tuner writes a trial's trial.json on CreateTrial, on each UpdateTrial and on EndTrial (a
temporary file, a rename and a directory check each time), under the oracle's lock. The chief
installs `TrialWrites` as its oracle's `_save_trial` (see `kt_compat.oracle_methods.install`):

- a new trial's first state, an ended trial's state (and a retried trial's new start) are appended
  to the project's journal (`<project>/trials.journal.<n>`), one line, before the call returns;
- every trial's trial.json is then written by the chief's state writer (`capture`, `write`), at
  most ~0.5 s later, before oracle.json; a restarted chief replays the journal first
  (`replay_journals`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import Callable, Optional

from tunecluster.core.pacing import pause_point
from tunecluster.core.rundir import write_atomic
from tunecluster.kt_compat import oracle_state

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
        self._written: dict[str, int] = {}  # trial id -> the version its trial.json holds
        self._guard = threading.Lock()
        self._writing = threading.Lock()  # one `write` at a time (never taken on a call's path)
        self._journal_fd: Optional[int] = None
        self._journal_path: Optional[str] = None

    def _path(self, trial_id: str) -> str:
        # (not the oracle's trial folder lookup: it makes the folder; `write_atomic` makes it)
        return oracle_state.trial_file(self.oracle, trial_id)

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
        project = oracle_state.project_dir(self.oracle)
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
            if not locked:
                pause_point()  # (the state writer's: between trials, not holding the lock)
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
        """Write each trial's newest state among `texts` (the state writer's thread), so that every
        trial in `texts` has its file when this returns: the work board written next names them.

        A trial that ended after its state was taken gets its journaled, newer state now (not
        nothing: its file would be missing until the next write, while the board names it); a
        state older than the one already in the file is never written (two writes that overlap,
        the writer thread's and the chief's final one, cannot put an older state back)."""
        newest: dict[str, tuple[int, str, str]] = {}
        for trial_id, version, path, text in texts:
            if trial_id not in newest or version > newest[trial_id][0]:
                newest[trial_id] = (version, path, text)
        with self._writing:
            for trial_id, (version, path, text) in newest.items():
                pause_point()
                with self._guard:
                    journaled = self._journaled.get(trial_id)
                    if journaled is not None and journaled[0] > version:
                        version, text = journaled  # (still journaled: its journal file goes later)
                    if self._written.get(trial_id, 0) >= version:
                        continue
                write_atomic(path, text, fsync=False)
                with self._guard:
                    self._written[trial_id] = version

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


