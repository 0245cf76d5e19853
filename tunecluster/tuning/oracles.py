"""Build the Keras Tuner oracle that a spec asks for (random, grid, bayesian, hyperband, asha).

Used by the chief (which runs it) and by each worker (whose local copy only carries the objective
and the search space it sends to the chief). The Bayesian oracle is `bayesian_oracle`'s subclass of
Keras Tuner's: same arguments and state, but its model is fitted outside the oracle's lock.
"""

from __future__ import annotations

from tunecluster.tuning.spec import TunerSpec


def build_oracle(tuner: TunerSpec):
    """Return a fresh, unconnected Keras Tuner oracle for this tuner spec."""
    import keras_tuner as kt

    objective = kt.Objective(tuner.objective, direction=tuner.direction)
    common = dict(
        objective=objective,
        seed=tuner.seed,
        max_retries_per_trial=tuner.max_retries_per_trial,
        max_consecutive_failed_trials=tuner.max_consecutive_failed_trials,
    )
    if tuner.kind == "random":
        return kt.oracles.RandomSearchOracle(max_trials=tuner.max_trials, **common)
    if tuner.kind == "grid":
        return kt.oracles.GridSearchOracle(max_trials=tuner.max_trials, **common)
    if tuner.kind == "bayesian":
        from tunecluster.tuning.bayesian_oracle import BayesianOptimizationOracle

        return BayesianOptimizationOracle(
            max_trials=tuner.max_trials,
            num_initial_points=tuner.bayesian.num_initial_points,
            alpha=tuner.bayesian.alpha,
            beta=tuner.bayesian.beta,
            **common,
        )
    if tuner.kind == "hyperband":
        return kt.oracles.HyperbandOracle(
            max_epochs=tuner.hyperband.max_epochs,
            factor=tuner.hyperband.factor,
            hyperband_iterations=tuner.hyperband.hyperband_iterations,
            **common,
        )
    if tuner.kind == "asha":
        from tunecluster.tuning.asha_oracle import AshaOracle

        return AshaOracle(max_trials=tuner.max_trials, min_epochs=tuner.asha.min_epochs,
                          max_epochs=tuner.asha.max_epochs, reduction_factor=tuner.asha.reduction_factor, **common)
    raise ValueError(f"unknown tuner kind {tuner.kind!r}")
