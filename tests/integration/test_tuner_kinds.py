"""The rest of the local backend end to end: Bayesian, Hyperband and grid searches over the
cluster, data from a `data.loader` function, `--detach` + `status` + `down`, and the Rich live
view on a real terminal (a pseudo-terminal made by `script`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap

import pytest
import yaml

from tunecluster.tuning.examples import csv_path


@pytest.mark.parametrize("kind", ["bayesian", "hyperband", "grid"])
def test_every_tuner_kind_runs_on_the_cluster(kind, tmp_path, cli):
    # Hyperband's confirmation retrains from scratch (no parent checkpoint): keep one run of it
    confirm = ["--confirm-top", "1", "--confirm-repeats", "1"] if kind == "hyperband" else ["--no-confirm"]
    result = cli("up", "--example", "pima-optimizer", "--tuner", kind, "--max-trials", "3", *confirm,
                 "--epochs", "2", "--workers", "2", "--dir", "run", cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    statuses = [t["status"] for t in document["trials"]]
    assert statuses and set(statuses) == {"COMPLETED"}, statuses
    assert document["tuner"] == kind and document["finished"] is True
    if kind != "hyperband":
        assert len(statuses) == 3
    else:  # Hyperband's schedule decides the count; every trial trains up to max_epochs
        assert all(t["hyperparameters"].get("tuner/epochs") == 2 for t in document["trials"])
    assert len({t["worker"] for t in document["trials"]}) >= 1
    assert (tmp_path / "run" / "best" / "model.keras").is_file()


LOADER = textwrap.dedent("""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    def load():
        frame = pd.read_csv(%r)
        x = frame.drop(columns=["Outcome"]).to_numpy("float32")
        y = frame["Outcome"].to_numpy("float32")
        x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0)
        return x_train, y_train, x_val, y_val
""")


def test_data_from_a_loader_function(tmp_path, cli):
    (tmp_path / "data_source.py").write_text(LOADER % str(csv_path()))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "loaded", "hypermodel": "tunecluster.tuning.examples.pima:build_optimizer",
        "data": {"loader": "data_source.py:load"},
        "tuner": {"max_trials": 2}, "fit": {"epochs": 1}, "cluster": {"workers": 1}}))
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())
    assert metrics["validation"]  # evaluated on the loader's validation rows
    assert "576 training rows" in (tmp_path / "run" / "logs" / "worker-0.log").read_text()  # 768 x 0.75


def test_detach_status_and_down(tmp_path, cli):
    started = cli("up", "--example", "pima-units", "--max-trials", "30", "--epochs", "20", "--workers", "1",
                  "--detach", "--dir", "run", cwd=tmp_path, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "detached" in started.stdout
    status = cli("status", "--dir", "run", "--format", "json", cwd=tmp_path, timeout=60)
    roles = json.loads(status.stdout)["roles"]
    assert [r["state"] for r in roles] == ["running", "running"]
    table = cli("status", "--dir", "run", cwd=tmp_path, timeout=60)
    assert "restarts" in table.stdout and "worker-0" in table.stdout
    down = cli("down", "--dir", "run", cwd=tmp_path, timeout=60)
    assert down.returncode == 0 and "chief" in down.stdout and "worker-0" in down.stdout
    after = json.loads(cli("status", "--dir", "run", "--format", "json", cwd=tmp_path, timeout=60).stdout)
    assert all(r["state"] != "running" for r in after["roles"])
    again = cli("down", "--dir", "run", cwd=tmp_path, timeout=60)
    assert again.returncode == 0 and "nothing was running" in again.stdout


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux `script` for a pseudo-terminal")
def test_rich_live_view_on_a_terminal(tmp_path):
    command = ("python -m tunecluster up --example pima-optimizer --max-trials 2 --epochs 1 "
               "--workers 1 --dir run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "160", "LINES": "40", "TERM": "xterm"}
    env["PATH"] = os.path.dirname(__import__("sys").executable) + os.pathsep + env.get("PATH", "")
    result = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    screen = result.stdout
    assert "trials" in screen and "━" in screen  # the progress bar
    assert "restarts" in screen and "tuner0" in screen  # the per-worker table
    assert "best val_accuracy" in screen
    assert "\x1b[" in screen  # drawn with terminal control sequences, not plain lines
