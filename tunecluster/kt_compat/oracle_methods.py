"""Cheaper per-call work for the Keras Tuner oracle that the chief serves, with the same results.

Keras Tuner's oracle repeats work on every call that grows with the search or could be skipped:
- `_check_consecutive_failures` walks every ended trial on each EndTrial (O(trials));
- `get_best_trials` sorts every trial on each call (O(trials log trials));
- `_random_values` registers a copy of each hyperparameter in a scratch `HyperParameters` just to
  ask whether its conditions hold (about 2 ms per trial for the 32-hyperparameter Pima space);
- `_get_trial_dir` looks the trial's folder up (and makes it) on every call;
- `_save_trial` rewrites the trial's trial.json on CreateTrial, on each UpdateTrial and on
  EndTrial; `save` rewrites oracle.json (which grows with the trial count) on every CreateTrial,
  EndTrial and space update: the chief gives both to its own writer (`cluster/chief/journal.py`,
  `cluster/chief/state_writer.py`).

`install` replaces these on one oracle instance (Keras Tuner calls them as `self.<name>`), each
with an equivalent that keeps the same results: the same failure stop and message, the same best
trials in the same order (ties by creation, as Keras Tuner's stable sort), the same random draws
from the same seed. Tests compare each one with Keras Tuner's own method.
"""

from __future__ import annotations

import bisect
import os
from typing import Callable

from tunecluster.kt_compat.oracle_state import ConsecutiveFailures


class ConsecutiveFailureCheck:
    """`_check_consecutive_failures`, reading each ended trial once instead of all on every call;
    it raises `ConsecutiveFailures` (a RuntimeError with Keras Tuner's message)."""

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
            raise ConsecutiveFailures(
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


def install(oracle, *, save_trial: Callable, save: Callable) -> Callable[[], None]:
    """Put the equivalents on `oracle` (instance attributes: Keras Tuner calls `self.<name>`),
    with `save_trial(trial)` in place of `_save_trial` and `save()` in place of `save` (the chief
    marks the state dirty and writes it later). Returns the oracle's own `save`, which writes
    oracle.json now."""
    oracle._get_trial_dir = trial_dirs(oracle)
    oracle._check_consecutive_failures = ConsecutiveFailureCheck(oracle)
    oracle.get_best_trials = BestTrials(oracle, oracle.get_best_trials)
    if type(oracle)._random_values is _kt_random_values():
        oracle._random_values = random_values(oracle)
    oracle._save_trial = save_trial
    save_now = oracle.save
    oracle.save = save
    return save_now


def _kt_random_values():
    from keras_tuner.src.engine import oracle as oracle_module

    return oracle_module.Oracle._random_values
