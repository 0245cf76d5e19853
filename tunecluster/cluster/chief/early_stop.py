"""The chief's median stopping (`tuner.early_stopping: {kind: median}`): judges each running
search training at every epoch its worker reports, against the curves of the completed trials.

A training judged worse than the median gets `stop_at` (the epoch of the decision); the chief's
heartbeat answers to its worker name it under `stop` until it ends, and the worker stops at its
next epoch boundary and reports what it reached. The trial ends COMPLETED for the oracle (so a
Bayesian search learns from the value it reached) and STOPPED_EARLY in the results. The rule
itself is `tuning.median_stopping`.
"""

from __future__ import annotations

import logging
from typing import Optional

from tunecluster.cluster.work import DONE, SEARCH, Board, Unit
from tunecluster.tuning.median_stopping import mean_curve, objective_curve, should_stop

log = logging.getLogger("tunecluster.chief")


def stopped_epoch(units) -> Optional[int]:
    """The epoch at which a trial's trainings were stopped early (the latest of them), or None."""
    epochs = [(u.result or {}).get("stopped_early") for u in units]
    epochs = [e for e in epochs if e]
    return max(epochs) if epochs else None


class MedianStopper:
    def __init__(self, spec, board: Board):
        self.rule = spec.tuner.early_stopping
        self.objective, self.direction = spec.tuner.objective, spec.tuner.direction
        self._reference: dict[str, list] = {}
        self.stopped = 0  # trainings told to stop (this chief's life)
        with board.lock:  # a restarted chief: the trials completed before
            trials = {u.trial_id for u in board.units.values() if u.kind == SEARCH}
        for trial_id in trials:
            units = board.of_trial(trial_id)
            if units and all(u.state == DONE for u in units):
                self.trial_completed(trial_id, units)

    def trial_completed(self, trial_id: str, units: list[Unit]) -> None:
        """A completed trial's curve joins the reference, unless it was itself stopped early."""
        if stopped_epoch(units) is None:
            self._reference[trial_id] = mean_curve([objective_curve(u.curve, self.objective) for u in units])

    def judge(self, unit: Unit) -> bool:
        """Decide on a search training after a reported epoch; True when it is told to stop now."""
        if unit.kind != SEARCH or unit.stop_at is not None:
            return False
        curve = objective_curve(unit.curve, self.objective)
        median = should_stop(curve, list(self._reference.values()), self.direction,
                             self.rule.grace_epochs, self.rule.min_trials)
        if median is None:
            return False
        unit.stop_at = len(curve)
        self.stopped += 1
        log.info("median stopping: %s stops at its next epoch end (best %s %.4g by epoch %d; median of %d "
                 "completed trials %.4g)", unit.key, self.objective,
                 max(v for v in curve if v is not None) if self.direction == "max"
                 else min(v for v in curve if v is not None), len(curve), len(self._reference), median)
        return True
