"""Warnings about searches that cannot answer the question asked of them (never errors).

At the start, once the search space is known:
- a Bayesian search whose `num_initial_points` (default 3 x the number of hyperparameters) is at
  least `max_trials` never fits its Gaussian process: it is a random search;
- a grid search whose space has more distinct configurations than 100 x `max_trials` samples less
  than 1% of it.
After the search (see `scoring` and the chief): trials whose predictions collapsed to one class are
flagged `degenerate`, and a note says when the top confirmed configurations cannot be told apart.
Pure Python over Keras Tuner's hyperparameter objects (no TensorFlow).
"""

from __future__ import annotations

import math
from typing import Optional

OVERLAP_NOTE = ("the top configurations are not distinguishable with this budget: their confirmed "
                "mean ± std intervals overlap (more --confirm-repeats or executions_per_trial would "
                "separate them, or they are equally good)")


def count_configurations(space) -> float:
    """Distinct configurations of a Keras Tuner space (math.inf with a continuous Float)."""
    total = 1.0
    for hp in space:
        kind = type(hp).__name__
        if kind == "Choice":
            total *= len(hp.values)
        elif kind == "Boolean":
            total *= 2
        elif kind == "Fixed":
            continue
        elif kind in ("Int", "Float"):
            step = getattr(hp, "step", None)
            low, high = hp.min_value, hp.max_value
            if kind == "Float" and not step:
                return math.inf
            step = step or 1
            if getattr(hp, "sampling", "linear") == "log" and step and step > 1 and low > 0:
                total *= math.floor(math.log(high / low) / math.log(step) + 1e-9) + 1
            else:
                total *= math.floor((high - low) / step + 1e-9) + 1
    return total


def start_warnings(spec, space) -> list[str]:
    """The warnings for a spec once its search space (a list of Keras Tuner hps) is known."""
    tuner = spec.tuner
    found = []
    if tuner.kind == "bayesian" and len(space):
        initial = tuner.bayesian.num_initial_points or 3 * len(space)
        if initial >= tuner.max_trials:
            found.append(
                f"this search is random search: Bayesian num_initial_points is {initial}"
                f"{'' if tuner.bayesian.num_initial_points else f' (3 x {len(space)} hyperparameters)'}"
                f" and max_trials is {tuner.max_trials}, so the Gaussian process never chooses a "
                "trial; raise max_trials or set tuner.bayesian.num_initial_points below it"
            )
    if tuner.kind == "grid" and len(space):
        count = count_configurations(space)
        if count > 100 * tuner.max_trials:
            size = "infinitely many (a Float without step)" if math.isinf(count) else f"{count:,.0f}"
            share = 0.0 if math.isinf(count) else 100.0 * tuner.max_trials / count
            found.append(
                f"grid search over {size} configurations with max_trials {tuner.max_trials} samples "
                f"{share:.3g}% of the space, in grid order (the first values of the first "
                "hyperparameters only); use random or bayesian search, or a smaller space"
            )
    return found


def degenerate_note(trial_ids: list[str]) -> Optional[str]:
    if not trial_ids:
        return None
    return (f"{len(trial_ids)} trial(s) predict a single class on the validation rows (their score is "
            f"the majority-class rate): {', '.join(trial_ids[:10])}{' ...' if len(trial_ids) > 10 else ''}")
