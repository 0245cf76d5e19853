"""Median stopping (`tuner.early_stopping: {kind: median}`), as pure logic on curves.

A curve is a training's objective value at each epoch (None where an epoch is not known). A
running training is stopped at epoch e (once e >= grace_epochs) when its best value so far is
worse than the median of the best values so far, at epoch e, of the completed trials that
reached e (at least `min_trials` of them). Trials that were themselves stopped early are not
part of the reference (as Optuna's median pruner and Katib's median stop).
"""

from __future__ import annotations

import statistics
from typing import Optional, Sequence


def running_best(curve: Sequence[Optional[float]], direction: str) -> list[Optional[float]]:
    """The best value so far at each epoch (None until the first known value)."""
    best: Optional[float] = None
    out = []
    for value in curve:
        if value is not None and (best is None or (value > best if direction == "max" else value < best)):
            best = value
        out.append(best)
    return out


def objective_curve(metrics_curve: Sequence[Optional[dict]], objective: str) -> list[Optional[float]]:
    """The objective's value at each epoch of a curve of per-epoch metric dicts."""
    return [None if not m or m.get(objective) is None else float(m[objective]) for m in metrics_curve]


def mean_curve(curves: Sequence[Sequence[Optional[float]]]) -> list[Optional[float]]:
    """The epoch-wise mean of several executions' curves (as long as the longest)."""
    length = max((len(c) for c in curves), default=0)
    out = []
    for i in range(length):
        values = [c[i] for c in curves if len(c) > i and c[i] is not None]
        out.append(sum(values) / len(values) if values else None)
    return out


def median_at(reference: Sequence[Sequence[Optional[float]]], epoch: int, direction: str,
              min_trials: int) -> Optional[float]:
    """The median of the reference curves' best values so far at `epoch` (1-based); None with
    fewer than `min_trials` curves that reached it."""
    values = []
    for curve in reference:
        if len(curve) >= epoch:
            value = running_best(curve[:epoch], direction)[-1]
            if value is not None:
                values.append(value)
    if len(values) < min_trials:
        return None
    return statistics.median(values)


def should_stop(curve: Sequence[Optional[float]], reference: Sequence[Sequence[Optional[float]]],
                direction: str, grace_epochs: int, min_trials: int) -> Optional[float]:
    """The median that `curve` (the epochs trained so far) falls short of, or None: go on."""
    epoch = len(curve)
    if epoch < max(1, grace_epochs):
        return None
    mine = running_best(curve, direction)[-1]
    median = median_at(reference, epoch, direction, min_trials)
    if mine is None or median is None:
        return None
    worse = mine < median if direction == "max" else mine > median
    return median if worse else None
