"""The Bayesian oracle's Gaussian process (`tuning/gp_suggest.py`, `tuning/gp_process.py`): the
numpy posterior equals scikit-learn's prediction, and its gradient the finite differences; with
trials running or many completed, the kernel is optimised on a bounded sample of the completed
trials and the model conditioned on a bounded set of observations."""

from __future__ import annotations

import numpy as np
import pytest


def score(values: dict) -> float:
    return 0.8 - 0.01 * (values.get("num_layers", 1) - 3) ** 2 - 0.1 * abs(values.get("dropout_0", 0.5) - 0.3)


def test_posterior_matches_scikit_learn_and_its_gradient():
    from scipy.optimize import approx_fprime

    from tunecluster.tuning import gp_suggest

    rng = np.random.RandomState(0)
    x = rng.uniform(size=(60, 5))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    state = gp_suggest.fit(gp_suggest.GPState(), x, y, alpha=1e-4, seed=1)
    points = rng.uniform(size=(7, 5))
    mean, std = state.gpr.predict(points, return_std=True)
    ours_mean, ours_std = state.posterior.predict(points)
    np.testing.assert_allclose(ours_mean, mean, atol=1e-8)
    np.testing.assert_allclose(ours_std, std, atol=1e-8)
    value, grad = state.posterior.lower_bound_and_grad(points[0], 2.6)
    assert value == pytest.approx(mean[0] - 2.6 * std[0])
    numeric = approx_fprime(points[0], lambda p: state.posterior.lower_bound_and_grad(p, 2.6)[0], 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)
    # the next fit keeps the kernel (no re-optimisation) until the data grew by 10 %
    again = gp_suggest.fit(state, np.vstack([x, points[:1]]), np.append(y, 0.0), alpha=1e-4, seed=1)
    assert again.optimized_at == 60 and again.gpr.kernel_.length_scale == state.gpr.kernel_.length_scale
    suggestions = gp_suggest.suggest(again.posterior, 5, 2.6, np.random.RandomState(1))
    assert all(((0 <= p) & (p <= 1)).all() for p in suggestions)




def _request(done: int, running: int, dims: int = 4, **extra) -> dict:
    rng = np.random.RandomState(3)
    x = rng.uniform(size=(done, dims))
    return {"x_done": x, "y_done": ((x - 0.3) ** 2).sum(axis=1), "x_running": rng.uniform(size=(running, dims)),
            "dims": dims, "alpha": 1e-4, "seed": 1, "beta": 2.6, "refit_growth": 0.1, "screen": 64,
            "starts": 2, "rng_seed": 7, **extra}


def test_a_serial_search_optimises_the_kernel_on_every_observation_as_before():
    from tunecluster.tuning import gp_process

    assert gp_process.kernel_sample(_request(50, 0), 50) == (None, None)  # unchanged path
    request = _request(50, 0)
    assert gp_process.bounded_observations(request)[0] is request["x_done"]


def test_the_kernel_is_optimised_on_a_bounded_sample_of_completed_trials_only():
    from tunecluster.tuning import gp_process, gp_suggest

    request = _request(80, 30, kernel_sample=50)
    x_kernel, y_kernel = gp_process.kernel_sample(request, 110)
    assert len(x_kernel) == len(y_kernel) == 50  # running trials' guessed values never, and at most 50
    assert all(any(np.array_equal(row, done) for done in request["x_done"]) for row in x_kernel)
    state, answer = gp_process.compute(gp_suggest.GPState(), request)
    assert answer["timing"]["kernel_observations"] == 50 and answer["timing"]["kernel_optimized"]
    assert len(state.posterior.x_train) == 110  # conditioned on every observation, the kernel fixed
    # the kernel is re-optimised as the completed trials grow by 10 %, though the sample stays at 50
    grown = _request(86, 30, kernel_sample=50)
    state, answer = gp_process.compute(state, grown)
    assert not answer["timing"]["kernel_optimized"]
    state, answer = gp_process.compute(state, _request(89, 30, kernel_sample=50))
    assert answer["timing"]["kernel_optimized"] and state.optimized_at == 89


def test_the_model_is_conditioned_on_a_bounded_number_of_observations():
    from tunecluster.tuning import gp_process, gp_suggest

    request = _request(300, 100, max_observations=200)
    x, y, running = gp_process.bounded_observations(request)
    assert len(running) == 50 and len(x) == len(y) == 150  # a quarter to running trials
    order = np.argsort(request["y_done"])
    kept = {tuple(row) for row in x}
    assert all(tuple(request["x_done"][i]) in kept for i in order[:75])  # the best half of the share
    assert all(tuple(row) in kept for row in request["x_done"][-75:])  # and the most recent
    state, _ = gp_process.compute(gp_suggest.GPState(), request)
    assert len(state.posterior.x_train) == 200
