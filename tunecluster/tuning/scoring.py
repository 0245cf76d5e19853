"""How the trainings of a trial become its score, and how confirmed configurations are ranked.

A worker returns, for each training, the metrics at its best epoch and at its last epoch. A trial's
score is the mean over its executions of one of the two (`tuner.score`: `best_epoch`, Keras
Tuner's choice, or `last_epoch`); both means and the spread are recorded. The confirmation stage
ranks the retrained configurations by the mean of their confirmed validation scores and says when
the top intervals (mean ± std) overlap. Pure Python: the chief runs it.
"""

from __future__ import annotations

import math
import statistics
from typing import Optional

MODE_KEYS = {"best_epoch": "best", "last_epoch": "last"}


def mean_std(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation of the numbers given (None and NaN left out)."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def unit_score(result: dict, objective: str, mode: str) -> Optional[float]:
    metrics = (result or {}).get(MODE_KEYS[mode]) or {}
    value = metrics.get(objective)
    return None if value is None else float(value)


def better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def aggregate_executions(results: list[dict], objective: str, mode: str, direction: str) -> dict:
    """The oracle's metrics for a trial from its executions' results (in execution order)."""
    key = MODE_KEYS[mode]
    names = sorted({name for r in results for name in (r.get(key) or {})})
    metrics = {}
    for name in names:
        mean, _ = mean_std([(r.get(key) or {}).get(name) for r in results])
        if mean is not None:
            metrics[name] = mean
    scores = [unit_score(r, objective, mode) for r in results]
    best_index = None
    for index, score in enumerate(scores):
        if score is not None and (best_index is None or better(score, scores[best_index], direction)):
            best_index = index
    epoch_key = "best_epoch" if mode == "best_epoch" else "last_epoch"
    epochs = [r.get(epoch_key) for r in results if r.get(epoch_key) is not None]
    best_mean, best_std = mean_std([unit_score(r, objective, "best_epoch") for r in results])
    last_mean, last_std = mean_std([unit_score(r, objective, "last_epoch") for r in results])
    flags = [r.get("degenerate") for r in results if r.get("degenerate") is not None]
    return {
        "metrics": metrics,
        "step": int(round(sum(epochs) / len(epochs))) if epochs else 0,
        "score_best_epoch": best_mean,
        "score_last_epoch": last_mean,
        "score_std": best_std if mode == "best_epoch" else last_std,
        "best_execution": best_index,
        "degenerate": bool(flags) and all(flags),
    }


def rank_confirmed(runs_by_trial: dict[str, list[dict]], objective: str, mode: str,
                   direction: str) -> list[dict]:
    """Confirmed configurations, best confirmed mean first; each with its spread and best run."""
    test_name = objective[4:] if objective.startswith("val_") else objective
    ranked = []
    for trial_id, runs in runs_by_trial.items():
        done = [r for r in runs if r.get("result")]
        scores = [unit_score(r["result"], objective, mode) for r in done]
        mean, std = mean_std(scores)
        test_mean, test_std = mean_std([((r["result"].get("test") or {}).get(test_name)) for r in done])
        best = None
        for run, score in zip(done, scores):
            if score is not None and (best is None or better(score, best["score"], direction)):
                best = {"index": run["index"], "score": score, "seed": run.get("seed"),
                        "weights": run["result"].get("weights"), "worker": run.get("worker"),
                        "validation": run["result"].get("validation"), "test": run["result"].get("test")}
        ranked.append({"trial_id": trial_id, "mean": mean, "std": std, "runs": len(done),
                       "failed": len(runs) - len(done), "scores": scores,
                       "test_mean": test_mean, "test_std": test_std, "best_run": best})
    sign = -1 if direction == "max" else 1
    ranked.sort(key=lambda r: (r["mean"] is None, sign * (r["mean"] or 0.0)))
    return ranked


def intervals_overlap(ranked: list[dict]) -> bool:
    """True when the best confirmed configuration's mean ± std interval overlaps another's."""
    rows = [r for r in ranked if r["mean"] is not None]
    if len(rows) < 2:
        return False
    top = rows[0]
    low, high = top["mean"] - (top["std"] or 0.0), top["mean"] + (top["std"] or 0.0)
    for other in rows[1:]:
        o_low, o_high = other["mean"] - (other["std"] or 0.0), other["mean"] + (other["std"] or 0.0)
        if o_low <= high and low <= o_high:
            return True
    return False
