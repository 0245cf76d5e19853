"""Export the best trial: `best/model.keras`, `best/hyperparameters.json`, `best/metrics.json`.

The model is rebuilt from the best trial's hyperparameters, its best-epoch checkpoint is loaded,
and it is saved as a plain Keras file (preprocessing included), so `keras.models.load_model` reads
it without tunecluster. The metrics are those of the exported model itself, evaluated on the
validation split (and the held-out test split when the spec has one), beside the search's score.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tunecluster.cluster.rundir import RunDir, write_json


def evaluate(model, x, y, batch_size: int) -> dict:
    result = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return {k: float(v) for k, v in result.items()}


def export_best(tuner, splits, run: RunDir, spec) -> dict:
    """Write the best model and its files into `run.best`; return metrics.json's content."""
    best = tuner.best_trial()
    if best is None:
        raise RuntimeError("no completed trial to export")
    model = tuner.load_model(best)
    run.best.mkdir(parents=True, exist_ok=True)
    tmp = run.best / ".model.partial.keras"
    model.save(tmp)
    os.replace(tmp, run.best_model)
    values = dict(best.hyperparameters.values)
    write_json(run.best_hyperparameters, {k: v for k, v in values.items() if not k.startswith("tuner/")})
    batch = spec.fit.batch_size
    metrics = {
        "trial_id": best.trial_id,
        "objective": {"name": spec.tuner.objective, "direction": spec.tuner.direction,
                      "score": best.score, "best_step": best.best_step},
        "validation": evaluate(model, splits.x_val, splits.y_val, batch),
        "test": (evaluate(model, splits.x_test, splits.y_test, batch)
                 if splits.x_test is not None else None),
        "rows": {"train": len(splits.y_train), "validation": len(splits.y_val),
                 "test": len(splits.y_test) if splits.y_test is not None else 0},
        "hyperparameters": values,
    }
    write_json(run.best_metrics, metrics)
    return metrics


def load_metrics(path: Path) -> dict:
    return json.loads(Path(path).read_text())
