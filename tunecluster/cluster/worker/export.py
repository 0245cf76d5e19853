"""Export the best trial: `best/model.keras`, `best/hyperparameters.json`, `best/metrics.json`.

With the confirmation stage, the chief's choice is the best confirmed configuration's best run:
the model is rebuilt from its hyperparameters and that run's weights are loaded. Without it, the
best trial of the search and its checkpoint (its best execution). The model is saved as a plain
Keras file (preprocessing included), so `keras.models.load_model` reads it without tunecluster.
The metrics are those of the exported model itself, evaluated on the validation split (and the
held-out test split when the spec has one), beside the search's score and, when confirmed, the
confirmed mean ± std over the retrainings. With the spec's `final` section the chosen model is
first trained longer (`final_training.py`), and `final` in metrics.json puts the figures of the
chosen checkpoint and of the exported model side by side.
"""

from __future__ import annotations

import os
from typing import Optional

from tunecluster.core.rundir import RunDir, write_json
from tunecluster.tuning.results import active_values


def evaluate(model, x, y, batch_size: int) -> dict:
    result = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return {k: float(v) for k, v in result.items()}


def _confirmed_model(tuner, choice: dict):
    from keras_tuner.engine import trial as trial_module

    trial = trial_module.Trial.from_state(choice["trial"])
    tuner._seed, tuner._confirming = None, True  # no Hyperband parent weights: the run's own
    try:
        model = tuner._try_build(trial.hyperparameters)
    finally:
        tuner._confirming = False
    model.load_weights(choice["weights"])
    return trial, model


def export_best(tuner, splits, run: RunDir, spec, choice: Optional[dict] = None) -> dict:
    """Write the best model and its files into `run.best`; return metrics.json's content."""
    confirmed = None
    if choice and choice.get("weights"):
        best, model = _confirmed_model(tuner, choice)
        confirmed = choice.get("confirmed")
        search_trial = tuner.oracle.get_trial(best.trial_id)
        score, best_step = search_trial.score, search_trial.best_step
    else:
        best = tuner.best_trial()
        if best is None:
            raise RuntimeError("no completed trial to export")
        model = tuner.load_model(best)
        score, best_step = best.score, best.best_step
    batch = spec.fit.batch_size
    extra = {}
    if getattr(spec, "final", None) is not None:
        from tunecluster.cluster.worker.final_training import train_final

        checkpoint = _figures(model, splits, batch)  # before the final training changes the model
        model, record = train_final(tuner, splits, spec, model, best.hyperparameters)
        extra["final"] = {**record, "checkpoint": checkpoint, "exported": _figures(model, splits, batch)}
    run.best.mkdir(parents=True, exist_ok=True)
    tmp = run.best / ".model.partial.keras"
    model.save(tmp)
    os.replace(tmp, run.best_model)
    # what the trial's trainings read (the chief's record), else what this build of it read
    active = (choice or {}).get("active") or tuner.last_read
    return write_choice(run, spec, splits, best, score, best_step, confirmed,
                        validation=evaluate(model, splits.x_val, splits.y_val, batch),
                        test=(evaluate(model, splits.x_test, splits.y_test, batch)
                              if splits.x_test is not None else None), active=active, **extra)


def _figures(model, splits, batch_size: int) -> dict:
    """The model's metrics on the validation rows and, when the spec holds rows out, the test rows."""
    return {"validation": evaluate(model, splits.x_val, splits.y_val, batch_size),
            "test": evaluate(model, splits.x_test, splits.y_test, batch_size) if splits.x_test is not None else None}


def write_choice(run: RunDir, spec, splits, best, score, best_step, confirmed, validation, test,
                 active: Optional[list] = None, **extra) -> dict:
    """`best/hyperparameters.json` (the values the trial's trainings read, `active`) and
    `best/metrics.json` (written last: its presence means the export is complete) for the exported
    trial; returns metrics.json's content."""
    run.best.mkdir(parents=True, exist_ok=True)
    values = dict(best.hyperparameters.values)
    used = active_values(values, active)
    write_json(run.best_hyperparameters, {k: v for k, v in used.items() if not k.startswith("tuner/")})
    metrics = {
        "trial_id": best.trial_id,
        "objective": {"name": spec.tuner.objective, "direction": spec.tuner.direction,
                      "score_mode": spec.tuner.score, "score": score, "best_step": best_step},
        "confirmed": confirmed,
        "validation": validation,
        "test": test,
        "rows": {"train": len(splits.y_train), "validation": len(splits.y_val),
                 "test": len(splits.y_test) if splits.y_test is not None else 0},
        "hyperparameters": used,
        "all_hyperparameters": values,
        **extra,
    }
    write_json(run.best_metrics, metrics)
    return metrics

