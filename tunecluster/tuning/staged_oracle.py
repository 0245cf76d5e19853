"""The chief's oracle for a staged search (the spec's `stages`): random trials first, then, once
every one of them has ended, Bayesian trials whose Gaussian process starts from all of them.

It is `bayesian_oracle.BayesianOptimizationOracle` (same state, same suggestions outside the lock)
with a barrier between the stages: while a first-stage trial still runs, a request for a new trial
is answered IDLE (the worker asks again; nothing restarts), so that the first Bayesian suggestion
sees every trial of the first stage, not only those that happened to be done. A first-stage trial
that failed counts as ended; the Bayesian stage then starts from those that completed.
"""

from __future__ import annotations

import logging

from keras_tuner.engine.trial import TrialStatus

from tunecluster.kt_compat import oracle_state
from tunecluster.tuning.bayesian_oracle import BayesianOptimizationOracle

log = logging.getLogger("tunecluster.chief")

ENDED = ("COMPLETED", "FAILED", "INVALID", "STOPPED")


class StagedOracle(BayesianOptimizationOracle):
    """Random for the first `first_stage` trials, Bayesian after all of them ended."""

    def __init__(self, *args, first_stage: int, **kwargs):
        super().__init__(*args, num_initial_points=first_stage, **kwargs)
        self.first_stage = first_stage
        self._announced = False

    def first_stage_trials(self) -> list[str]:
        """The first stage's trial ids (the first `first_stage` created)."""
        return sorted(self.trials, key=lambda t: (len(t), t))[: self.first_stage]

    def first_stage_over(self) -> bool:
        ids = self.first_stage_trials()
        return len(ids) >= self.first_stage and all(self.trials[t].status in ENDED for t in ids)

    def _initial_points(self) -> int:
        # after the barrier every first-stage trial is an initial point, however many completed
        return 0 if self.first_stage_over() else self.first_stage

    def populate_space(self, trial_id):
        if len(self.trials) < self.first_stage:
            return oracle_state.random_trial(self)
        if not self.first_stage_over():
            return {"status": TrialStatus.IDLE, "values": None}
        if not self._announced:
            self._announced = True
            done = [t for t in self.first_stage_trials() if self.trials[t].status == "COMPLETED"]
            log.info("stage 2 (bayesian): starting from the %d completed trials of stage 1 (%s)",
                     len(done), ", ".join(done))
        return super().populate_space(trial_id)


def build_staged_oracle(spec) -> StagedOracle:
    """The chief's oracle for a spec with `stages` (its `tuner` already holds their sum and kind)."""
    import keras_tuner as kt

    tuner = spec.tuner
    return StagedOracle(
        objective=kt.Objective(tuner.objective, direction=tuner.direction), max_trials=tuner.max_trials,
        first_stage=spec.stages[0].max_trials, alpha=tuner.bayesian.alpha, beta=tuner.bayesian.beta,
        seed=tuner.seed, max_retries_per_trial=tuner.max_retries_per_trial,
        max_consecutive_failed_trials=tuner.max_consecutive_failed_trials)
