"""A real 2-worker local search of pima-optimizer (real TensorFlow, real gRPC, real processes),
then everything a user does with the run: results, status, pull, the exported model in a fresh
process, and a second `up` that must not clobber the finished run."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys

import pytest

from tunecluster.tuning.examples import csv_path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import run_cli

    work = tmp_path_factory.mktemp("local")
    result = run_cli("up", "--example", "pima-optimizer", "--workers", "2", "--max-trials", "4",
                     "--epochs", "2", "--confirm-top", "2", "--confirm-repeats", "2", "--dir", "run",
                     cwd=work, timeout=400)
    return work, work / "run", result


def test_search_completes_with_both_workers(finished_run):
    work, run, result = finished_run
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((run / "results.json").read_text())
    trials = document["trials"]
    assert document["finished"] is True
    assert len(trials) == 4
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert len({t["trial_id"] for t in trials}) == 4
    assert {t["worker"] for t in trials} == {"tuner0", "tuner1"}
    for t in trials:
        assert t["hyperparameters"]["optimizer"] in {"adam", "sgd", "rmsprop", "adadelta"}
        assert 0.0 <= t["score"] <= 1.0 and t["started"] and t["ended"]
    # the results table is printed at the end
    assert "COMPLETED" in result.stdout and "best model:" in result.stdout


def test_results_csv_has_one_row_per_trial(finished_run):
    _, run, _ = finished_run
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"COMPLETED"}
    assert "hp.optimizer" in rows[0] and rows[0]["worker"] in {"tuner0", "tuner1"}


def test_exported_model_reproduces_its_metrics_in_a_fresh_process(finished_run):
    _, run, _ = finished_run
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    hps = json.loads((run / "best" / "hyperparameters.json").read_text())
    document = json.loads((run / "results.json").read_text())
    # the exported model is the best confirmed configuration's best retraining
    best = next(t for t in document["trials"] if t["trial_id"] == document["best_trial"])
    ranked = [t for t in document["trials"] if t["confirmed"]]
    assert len(ranked) == 2 and all(t["confirmed"]["runs"] == 2 for t in ranked)
    assert best["confirmed"]["mean"] == max(t["confirmed"]["mean"] for t in ranked)
    assert metrics["trial_id"] == best["trial_id"]
    assert metrics["confirmed"]["mean"] == pytest.approx(best["confirmed"]["mean"])
    assert metrics["objective"]["score"] == pytest.approx(best["score"])
    assert hps == {"optimizer": best["hyperparameters"]["optimizer"]}
    # plain Keras + scikit-learn only: no tunecluster import in the evaluating process
    script = f"""
import json, sys
import numpy as np, pandas as pd, keras
from sklearn.model_selection import train_test_split
assert "tunecluster" not in sys.modules
frame = pd.read_csv({str(csv_path())!r})
x = frame.drop(columns=["Outcome"]).to_numpy("float32"); y = frame["Outcome"].to_numpy("float32")
_, x_val, _, y_val = train_test_split(x, y, test_size=0.2, random_state=42)
model = keras.models.load_model({str(run / 'best' / 'model.keras')!r})
print(json.dumps(model.evaluate(x_val, y_val, verbose=0, return_dict=True)))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(fresh["accuracy"] - metrics["validation"]["accuracy"]) <= 0.005
    assert abs(fresh["loss"] - metrics["validation"]["loss"]) <= 0.005
    # ... at that retraining's best epoch
    assert abs(metrics["validation"]["accuracy"] - max(best["confirmed"]["scores"])) <= 0.005


def test_status_lists_roles_with_states_and_pids(finished_run, cli):
    work, run, _ = finished_run
    result = cli("status", "--dir", str(run), "--format", "json", cwd=work, timeout=60)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    names = {r["name"]: r for r in status["roles"]}
    assert set(names) == {"chief", "worker-0", "worker-1"}
    assert all(r["state"] == "exited" and r["exit_code"] == 0 and r["pid"] > 0 for r in names.values())
    assert status["chief_address"].startswith("127.0.0.1:")
    assert status["finished"] is True and status["counts"]["completed"] == 4


def test_results_command_formats(finished_run, cli):
    work, run, _ = finished_run
    as_json = cli("results", "--dir", str(run), "--format", "json", cwd=work, timeout=60)
    assert json.loads(as_json.stdout)["trials"][0]["status"] == "COMPLETED"
    as_csv = cli("results", "--dir", str(run), "--format", "csv", cwd=work, timeout=60)
    assert as_csv.stdout.splitlines()[0].startswith("trial_id,status,score,score_best_epoch,score_last_epoch")
    assert "confirmed_mean" in as_csv.stdout.splitlines()[0]
    table = cli("results", "--dir", str(run), cwd=work, timeout=60)
    assert "optimizer" in table.stdout and table.returncode == 0
    assert "confirmed" in table.stdout and "last epoch" in table.stdout


def test_pull_copies_the_best_model_and_never_overwrites(finished_run, cli):
    work, run, _ = finished_run
    result = cli("pull", "--dir", str(run), "--to", "out", cwd=work, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (work / "out" / "model.keras").read_bytes() == (run / "best" / "model.keras").read_bytes()
    assert (work / "out" / "metrics.json").is_file()
    again = cli("pull", "--dir", str(run), "--to", "out", cwd=work, timeout=60)
    assert again.returncode == 2 and "--force" in again.stderr


def test_up_refuses_to_clobber_a_finished_run(finished_run, cli):
    work, run, _ = finished_run
    digest = hashlib.sha256((run / "results.json").read_bytes()).hexdigest()
    model = (run / "best" / "model.keras").read_bytes()
    result = cli("up", "--example", "pima-optimizer", "--dir", "run", cwd=work, timeout=60)
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "already holds a finished run" in lines[0] and "--force" in lines[0]
    assert hashlib.sha256((run / "results.json").read_bytes()).hexdigest() == digest
    assert (run / "best" / "model.keras").read_bytes() == model


def test_logs_per_role(finished_run, cli):
    work, run, _ = finished_run
    assert {p.name for p in (run / "logs").iterdir()} == {"chief.log", "worker-0.log", "worker-1.log"}
    result = cli("logs", "worker-0", "--dir", str(run), cwd=work, timeout=60)
    assert "tuner0" in result.stdout
