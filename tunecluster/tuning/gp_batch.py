"""A batch of Bayesian suggestions from one model fit: the liar rule, as plain arithmetic on arrays.

When several workers wait for a Bayesian suggestion, one fit of the Gaussian process serves all of
them (`bayesian_oracle`). The first point is the ordinary suggestion (`gp_suggest.suggest`: the
screen, then L-BFGS-B from the best few); each next point is chosen after the previous ones were
added to the model as pending observations at the model's `mean + std` there (Keras Tuner's rule
for running trials, a pessimistic "liar" in the minimised units), with the kernel fixed: the
posterior is conditioned on each pending point, nothing is re-optimised. A pending point's
neighbourhood thus loses its uncertainty bonus and gets a worse mean, which pushes the next points
away from it.

The later points are chosen from a candidate pool: the first suggestion's candidates (its
L-BFGS-B optima, the screened random points, the best observations) plus a few small random steps
around its optima. The posterior over the pool (mean and covariance) is computed once, in one
matrix product like the screen; conditioning on a pending point is then a rank-one update of that
covariance, so a batch of k costs about one screen more than a single suggestion, not k
suggestions. With `count == 1` nothing here runs and the result is the single suggestion.

`batch()` returns, per point, candidate vectors in [0, 1]^d (the chosen one first, then the pool's
next best at that step), so that the caller can skip one that duplicates a trial.
"""

from __future__ import annotations

import numpy as np

from tunecluster.tuning.gp_suggest import Posterior

FALLBACKS = 32  # candidates after the chosen one, per point (the oracle checks at most 33)


def pool(first: list[np.ndarray], rng: np.random.RandomState, around: int = 5, steps: int = 8,
         scale: float = 0.05) -> np.ndarray:
    """The candidate pool: `first` (best first) and `steps` random steps around each of its `around` best."""
    points = np.clip(np.asarray(first, dtype=float), 0.0, 1.0)
    centres = points[:around]
    moved = centres[:, None, :] + rng.normal(0.0, scale, size=(len(centres), steps, points.shape[1]))
    return np.vstack([points, np.clip(moved.reshape(-1, points.shape[1]), 0.0, 1.0)])


def joint(posterior: Posterior, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The posterior mean and covariance over `candidates`, in the regressor's normalised units."""
    k = posterior.covariance(candidates, posterior.x_train)  # (m, n)
    mean = k @ posterior.alpha
    v = posterior.whiten(k)
    cov = posterior.covariance(candidates, candidates) - v.T @ v
    return mean, cov


def batch(posterior: Posterior, first: list[np.ndarray], count: int, beta: float,
          rng: np.random.RandomState, separation: float = 0.01) -> list[list[np.ndarray]]:
    """`count` points (fewer if the pool runs out), each a list of candidates (chosen first):
    `first` (the ordinary suggestion, best first) for the first point, then the liar rule over the
    pool (see the module). A candidate closer than `separation` to a chosen point is not chosen
    (several L-BFGS-B starts can end at the same optimum)."""
    if count <= 1 or not len(first):
        return [list(first)]
    candidates = pool(first, rng)
    mean, cov = joint(posterior, candidates)
    taken = np.zeros(len(candidates), dtype=bool)
    chosen = 0  # candidates[0] is first[0], the ordinary suggestion
    points = [list(first)]
    for _ in range(count - 1):
        taken |= np.linalg.norm(candidates - candidates[chosen], axis=1) < separation
        taken[chosen] = True
        # the chosen point becomes a pending observation at mean + std (in normalised units)
        variance = max(float(cov[chosen, chosen]), 0.0)
        column = cov[:, chosen].copy()
        denominator = variance + posterior.noise
        mean = mean + column * np.sqrt(variance) / denominator
        cov = cov - np.outer(column, column) / denominator
        bound = mean - beta * np.sqrt(np.maximum(np.diag(cov), 0.0))
        bound[taken] = np.inf
        order = np.argsort(bound)
        if not np.isfinite(bound[order[0]]):
            break  # the pool is used up
        chosen = int(order[0])
        points.append([candidates[i] for i in order[: FALLBACKS + 1] if np.isfinite(bound[i])])
    return points
