"""The Bayesian oracle's Gaussian process (`tuning/gp_suggest.py`): the numpy posterior equals
scikit-learn's prediction, and its gradient the finite differences."""

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


