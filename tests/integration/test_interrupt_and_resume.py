"""Ctrl-C (or SIGTERM) to `tunecluster up` stops every process it started and says how to resume;
`up --resume` then finishes the same search without losing the trials already completed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tunecluster.backends.local.recorded import pid_alive


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_everything_and_resume_finishes(tmp_path, cli, sig):
    run = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tunecluster", "up", "--example", "pima-optimizer", "--no-confirm", "--workers", "2",
         "--max-trials", "4", "--epochs", "3", "--dir", str(run)],
        cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    completed = 0
    while time.time() < deadline and launcher.poll() is None:
        try:
            progress = json.loads((run / "progress.json").read_text())
            completed = progress["counts"]["completed"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        if completed >= 1:
            break
        time.sleep(0.2)
    assert completed >= 1, "no trial completed in time"
    launcher.send_signal(sig)
    output, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, output
    assert f"tunecluster up --dir {run} --resume" in output
    roles = json.loads((run / "cluster.json").read_text())["roles"]
    assert len(roles) == 3 and not any(pid_alive(r["pid"]) for r in roles)
    assert not (run / "secrets" / "token").read_text().strip() in output

    before = {t["trial_id"]: t for t in json.loads((run / "results.json").read_text())["trials"]
              if t["status"] == "COMPLETED"}
    assert before
    # a plain `up` refuses the interrupted run and names both ways out
    refused = cli("up", "--example", "pima-optimizer", "--dir", str(run), cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "--force" in refused.stderr

    resumed = cli("up", "--example", "pima-optimizer", "--no-confirm", "--dir", str(run), "--resume", cwd=tmp_path, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = json.loads((run / "results.json").read_text())
    assert after["finished"] is True
    statuses = [t["status"] for t in after["trials"]]
    assert statuses == ["COMPLETED"] * 4, statuses
    for trial_id, row in before.items():  # nothing completed before the interrupt was lost or rerun
        kept = next(t for t in after["trials"] if t["trial_id"] == trial_id)
        assert kept["score"] == row["score"] and kept["hyperparameters"] == row["hyperparameters"]
    assert (run / "best" / "model.keras").is_file()
