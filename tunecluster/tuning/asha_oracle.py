"""ASHA, asynchronous successive halving (Li et al., MLSys 2020), as a Keras Tuner `Oracle`.

Rungs train to min_epochs * eta^k epochs (the last one to max_epochs). When a worker asks for
work, the oracle promotes the best configuration of the highest rung that has a promotable one -
a completed trial among the top 1/eta of its rung's completed trials, not yet promoted - to the
next rung; otherwise it starts a new configuration at the bottom rung, until `max_trials`
configurations were started; then it answers IDLE while trials run (one may still become
promotable) and STOPPED when none runs. No rung waits for another: every worker stays busy.

A promotion is a new trial with the same hyperparameters and Keras Tuner's Hyperband keys:
`tuner/epochs` (the next rung), `tuner/initial_epoch` (this rung) and `tuner/trial_id` (the
promoted trial). The worker continues it from the promoted trial's rung checkpoint (weights and
optimizer state, `cluster/worker/resume.py`), not from scratch.

The rungs are read from the trials themselves (their `tuner/` values, statuses and scores), so
the oracle keeps no state of its own beyond Keras Tuner's: a restarted chief that reloads the
trials has every rung back. Stock Keras Tuner clients see ordinary trials.
"""

from __future__ import annotations

from typing import Optional

import keras_tuner as kt
from keras_tuner.engine.trial import TrialStatus

EPOCHS, INITIAL, PARENT = "tuner/epochs", "tuner/initial_epoch", "tuner/trial_id"


def rung_epochs(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    epochs, rungs = min_epochs, []
    while epochs < max_epochs:
        rungs.append(epochs)
        epochs *= eta
    return rungs + [max_epochs]


class AshaOracle(kt.Oracle):
    def __init__(self, objective=None, max_trials: int = 10, min_epochs: int = 1, max_epochs: int = 27,
                 reduction_factor: int = 3, seed=None, hyperparameters=None, allow_new_entries=True,
                 tune_new_entries=True, max_retries_per_trial=0, max_consecutive_failed_trials=3):
        if reduction_factor < 2:
            raise ValueError("reduction_factor must be at least 2")
        if min_epochs > max_epochs:
            raise ValueError("min_epochs must not exceed max_epochs")
        super().__init__(objective=objective, max_trials=None, hyperparameters=hyperparameters,
                         allow_new_entries=allow_new_entries, tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials)
        self.configurations = max_trials  # bottom-rung trials (Keras Tuner's max_trials counts every trial)
        self.eta = reduction_factor
        self.rungs = rung_epochs(min_epochs, max_epochs, reduction_factor)

    # --- the rungs, read from the trials ---------------------------------------------------------
    def rung_of(self, trial) -> Optional[int]:
        epochs = trial.hyperparameters.values.get(EPOCHS)
        return self.rungs.index(epochs) if epochs in self.rungs else None

    def rung_table(self) -> list[list]:
        """The completed trials of each rung, best first."""
        table: list[list] = [[] for _ in self.rungs]
        for trial in self.trials.values():
            rung = self.rung_of(trial)
            if rung is not None and trial.status == TrialStatus.COMPLETED and trial.score is not None:
                table[rung].append(trial)
        reverse = self.objective.direction == "max"
        for rung in table:  # best first; equal scores: the earlier trial first
            rung.sort(key=lambda t: (-t.score if reverse else t.score, len(t.trial_id), t.trial_id))
        return table

    def promoted(self) -> set:
        return {t.hyperparameters.values.get(PARENT) for t in self.trials.values()} - {None}

    def promotion(self) -> Optional[tuple]:
        """(trial, rung) to promote next, or None."""
        table, promoted = self.rung_table(), self.promoted()
        for rung in range(len(self.rungs) - 2, -1, -1):
            completed = table[rung]
            for trial in completed[: len(completed) // self.eta]:
                if trial.trial_id not in promoted:
                    return trial, rung
        return None

    def started_configurations(self) -> int:
        return sum(1 for t in self.trials.values() if PARENT not in t.hyperparameters.values)

    # --- Keras Tuner's hook ------------------------------------------------------------------
    def populate_space(self, trial_id):
        pick = self.promotion()
        if pick is not None:
            parent, rung = pick
            values = {k: v for k, v in parent.hyperparameters.values.items() if not k.startswith("tuner/")}
            values.update({EPOCHS: self.rungs[rung + 1], INITIAL: self.rungs[rung], PARENT: parent.trial_id,
                           "tuner/bracket": 0, "tuner/round": rung + 1})
            return {"status": TrialStatus.RUNNING, "values": values}
        if self.started_configurations() < self.configurations:
            values = self._random_values()
            if values is not None:
                values.update({EPOCHS: self.rungs[0], INITIAL: 0, "tuner/bracket": 0, "tuner/round": 0})
                return {"status": TrialStatus.RUNNING, "values": values}
        if any(t.status == TrialStatus.RUNNING for t in self.trials.values()) or self.ongoing_trials:
            return {"status": TrialStatus.IDLE}
        return {"status": TrialStatus.STOPPED}
