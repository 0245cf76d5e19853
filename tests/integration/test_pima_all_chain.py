"""`up --example pima-all --chain` for real: the earlier phases are constructed as finished runs
(phase 1's confirmed winner: sgd), `--resume` skips them, and the units phase that does run trains
with the carried optimizer (its exported model's optimizer is SGD); the table and pima-all.json
follow. Plus the one-line refusals of --chain and --budget where they do not apply."""

from __future__ import annotations

import json

from tunecluster.core.rundir import RunDir, write_atomic, write_json
from tunecluster.tuning.examples import ALL_PHASE_ORDER, example_spec
from tunecluster.tuning.spec import dump_spec


def _finished_phase(root, name, hps, mean):
    run = RunDir(root / name)
    run.root.mkdir(parents=True)
    write_atomic(run.spec, dump_spec(example_spec(name)))
    write_json(run.progress, {"finished": True})
    write_json(run.results_json, {
        "experiment": name, "direction": "max", "best_trial": "0",
        "trials": [{"trial_id": "0", "status": "COMPLETED", "score": mean, "hyperparameters": hps,
                    "confirmed": {"mean": mean, "std": 0.01, "runs": 3, "test_mean": None, "test_std": None}}],
        "confirmation": {"ranking": ["0"], "overlap": False}})


def test_chain_trains_the_next_phase_with_the_constructed_winner(tmp_path, cli):
    import keras

    root = tmp_path / "runs"
    _finished_phase(root, "pima-optimizer", {"optimizer": "sgd"}, 0.76)
    for name, hps in (("pima-layers", {"num_layers": 2}), ("pima-comprehensive", {"num_layers": 1, "dropout_0": 0.3}),
                      ("pima-baseline", {"units": 32, "optimizer": "adam"})):
        _finished_phase(root, name, hps, 0.75)
    result = cli("up", "--example", "pima-all", "--chain", "--resume", "--dir", str(root), "--workers", "1",
                 "--max-trials", "1", "--epochs", "1", "--confirm-repeats", "1", cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pima-units: carried from the earlier phases: optimizer=sgd" in result.stdout
    units = RunDir(root / "pima-units")
    assert example_spec("pima-units").hypermodel_args == {}
    assert "optimizer: sgd" in units.spec.read_text()
    model = keras.saving.load_model(units.best_model)
    assert type(model.optimizer).__name__ == "SGD"
    winner = json.loads(units.best_hyperparameters.read_text())
    assert f"pima-layers: carried from the earlier phases: optimizer=sgd, units={winner['units']}" in result.stdout
    document = json.loads((root / "pima-all.json").read_text())
    assert document["chained"] is True and document["carried"]["optimizer"] == "sgd"
    assert [p["phase"] for p in document["phases"]] == ALL_PHASE_ORDER
    row = next(r for r in document["rows"] if r["row"] == "phase 2: units")
    assert "carried optimizer=sgd" in row["this_run"] and row["claim"] == "128 units best"
    assert "Pima tutorial: its claims beside this run" in result.stdout


def test_chain_and_budget_where_they_do_not_apply(tmp_path, cli):
    for args, message in ((("--example", "pima-units", "--chain"), "--chain carries winners between the phases"),
                          (("-f", "x.yaml", "--budget", "tutorial"), "--budget sets the trials and epochs"),
                          (("--example", "pima-all", "--budget", "huge"), "--budget: unknown budget 'huge'")):
        result = cli("up", *args, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr + result.stdout
        assert "Traceback" not in result.stderr


def test_the_baseline_is_trained_and_confirmed_like_a_winner(tmp_path, cli):
    run = RunDir(tmp_path / "baseline")
    result = cli("up", "--example", "pima-baseline", "--dir", str(run.root), "--workers", "1", "--epochs", "1",
                 "--confirm-repeats", "2", "--holdout", "0.2", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(run.results_json.read_text())
    assert [t["hyperparameters"] for t in document["trials"]] == [{"units": 32, "optimizer": "adam"}]
    confirmed = document["trials"][0]["confirmed"]
    assert confirmed["runs"] == 2 and confirmed["test_mean"] is not None  # retrained, scored on held-out rows
