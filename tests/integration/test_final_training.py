"""The spec's `final` section on a real run: after the search and the confirmation stage the
chosen configuration is trained further from its checkpoint (initial_epoch = fit.epochs), its best
epoch is kept, and best/metrics.json's figures for the exported model equal an independent
evaluation of best/model.keras; the checkpoint's figures equal those its confirmation run reported."""

from __future__ import annotations

import json

import pytest
import yaml

from tunecluster.core.rundir import RunDir
from tunecluster.tuning.examples import csv_path


def _spec(tmp_path, final: dict) -> str:
    spec = {
        "name": "final-training",
        "hypermodel": "tunecluster.tuning.examples.pima:build_units",
        "data": {"csv": str(csv_path()), "target": "Outcome", "validation_fraction": 0.2, "test_fraction": 0.2},
        "tuner": {"kind": "random", "max_trials": 2, "seed": 3},
        "fit": {"epochs": 2, "batch_size": 32},
        "confirm": {"top": 1, "repeats": 1},
        "final": final,
        "cluster": {"workers": 1},
    }
    path = tmp_path / "tunecluster.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.parametrize("final, initial, runs", [
    ({"epochs": 6, "early_stopping_patience": 2, "from_checkpoint": True}, 2, (1, 4)),  # epochs 3..6 at most
    ({"epochs": 3, "from_checkpoint": False}, 0, (3, 3)),  # afresh, every epoch
], ids=["from-checkpoint", "afresh"])
def test_final_training_exports_a_model_whose_metrics_equal_an_independent_evaluation(tmp_path, cli, final,
                                                                                      initial, runs):
    import keras

    from tunecluster.tuning.datasets import load_splits
    from tunecluster.tuning.spec import load_spec

    run = RunDir(tmp_path / "run")
    result = cli("up", "-f", _spec(tmp_path, final), "--dir", str(run.root), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads(run.best_metrics.read_text())
    record = metrics["final"]
    assert record["from_checkpoint"] is final["from_checkpoint"] and record["initial_epoch"] == initial
    assert runs[0] <= record["epochs_run"] <= runs[1]
    assert initial + 1 <= record["best_epoch"] <= initial + record["epochs_run"]
    assert metrics["validation"] == record["exported"]["validation"] and metrics["test"] == record["exported"]["test"]

    spec = load_spec(run.spec)
    splits = load_splits(spec.data)
    model = keras.saving.load_model(run.best_model)
    for rows, x, y in (("validation", splits.x_val, splits.y_val), ("test", splits.x_test, splits.y_test)):
        independent = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
        for name, value in independent.items():
            assert metrics[rows][name] == pytest.approx(float(value), rel=1e-5), (rows, name)

    # the checkpoint's figures: those of the confirmation run the export started from
    work = json.loads(run.work.read_text())
    confirmed = next(u for u in work["units"] if u["kind"] == "confirm" and u["trial_id"] == metrics["trial_id"]
                     and u["index"] == metrics["confirmed"]["run"])
    for name, value in confirmed["result"]["validation"].items():
        assert record["checkpoint"]["validation"][name] == pytest.approx(value, rel=1e-5), name


def test_final_that_cannot_run_is_refused_before_anything_starts(tmp_path, cli):
    result = cli("up", "-f", _spec(tmp_path, {"epochs": 2, "from_checkpoint": True}), "--dir", str(tmp_path / "r"),
                 cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "final.epochs (2) must be more than fit.epochs (2)" in result.stderr
    assert not (tmp_path / "r").exists()
