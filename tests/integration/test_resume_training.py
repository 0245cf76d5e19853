"""Trainings that resume, on real searches (chief and worker processes, real tiny TensorFlow
trainings): a training taken back at epoch e - by SIGKILL, by SIGTERM, or by its lease expiring
while its worker is frozen - continues on the next worker from its checkpoint (epoch >= e), ends
with all its epochs in its curve, and its checkpoint is removed once its result is in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from curve_models import LOADER, MODEL
from waiting import read_json, wait

EPOCHS = 30


def _start(tmp_path, workers, lease_timeout=30.0):
    (tmp_path / "data.py").write_text(LOADER)
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "resume", "hypermodel": "model.py:build", "data": {"loader": "data.py:load"},
        "tuner": {"kind": "grid", "max_trials": 1},
        "fit": {"checkpoint_seconds": 0, "epochs": EPOCHS, "batch_size": 32, "tensorboard": False},
        "confirm": {"enabled": False},
        "cluster": {"workers": workers, "tf_threads": 1, "heartbeat_interval": 0.2,
                    "lease_timeout": lease_timeout}}))
    return subprocess.Popen(
        [sys.executable, "-m", "tunecluster", "up", "-f", "spec.yaml", "--dir", "run"], cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "EPOCH_PAUSE": "0.15"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _checkpointed(run, at_least):
    """The epochs the running training's checkpoint holds, once it holds `at_least`."""
    state = read_json(run / "checkpoints" / "0_0" / "state.json")
    return state.get("epochs") if (state.get("epochs") or 0) >= at_least else None


def _role_pid(run, tuner_id):
    roles = read_json(run / "cluster.json")["roles"]
    return next(r["pid"] for r in roles if r["name"] == f"worker-{tuner_id[len('tuner'):]}")


def _finish(launcher, run):
    output, _ = launcher.communicate(timeout=400)
    assert launcher.returncode == 0, output[-3000:]
    row = read_json(run / "results.json")["trials"][0]
    assert row["status"] == "COMPLETED"
    execution = row["executions"][0]
    assert len(execution["curve"]) == EPOCHS and all(execution["curve"])  # every epoch, once
    assert not (run / "checkpoints" / "0_0").exists()  # removed once the result was in
    return row, execution


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_or_terminated_worker_s_training_resumes_from_its_checkpoint(tmp_path, how):
    run = tmp_path / "run"
    launcher = _start(tmp_path, workers=1)
    try:
        wait(lambda: read_json(run / "progress.json").get("leases", {}).get("0#0"), 240, "the training to start")
        taken_at = wait(lambda: _checkpointed(run, 3), 120, "three checkpointed epochs")
        pid = _role_pid(run, "tuner0")
        os.kill(pid, getattr(signal, how))
        # the supervisor restarts the worker (same id); it takes its training back and resumes it
        row, execution = _finish(launcher, run)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert execution["resumed_from"] >= taken_at - 1, execution
    assert execution["resumed_from"] < EPOCHS
    log = (run / "logs" / "worker-0.log").read_text()
    assert f"resumes from its checkpoint after epoch {execution['resumed_from']}" in log
    if how == "SIGTERM":
        assert "stopped by SIGTERM" in log


def test_a_training_whose_lease_expires_resumes_on_the_other_worker(tmp_path):
    run = tmp_path / "run"
    launcher = _start(tmp_path, workers=2, lease_timeout=3.0)
    frozen = None
    try:
        holder = wait(lambda: read_json(run / "progress.json").get("leases", {}).get("0#0"), 240, "the training")
        taken_at = wait(lambda: _checkpointed(run, 3), 120, "three checkpointed epochs")
        frozen = _role_pid(run, holder)
        os.kill(frozen, signal.SIGSTOP)  # no heartbeats: the lease expires, the other worker takes it
        other = wait(lambda: (lambda h: h if h not in (None, holder) else None)(
            read_json(run / "progress.json").get("leases", {}).get("0#0")), 60, "the other worker to take it")
        wait(lambda: (read_json(run / "progress.json").get("workers", {}).get(other, {}).get("epoch") or 0)
              > taken_at, 60, "the other worker to train past the checkpoint")
        os.kill(frozen, signal.SIGCONT)  # the frozen worker wakes up, hears its lease is gone
        frozen = None
        row, execution = _finish(launcher, run)
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        if launcher.poll() is None:
            launcher.kill()
    assert execution["worker"] == other and row["requeues"] == 1
    assert execution["resumed_from"] >= taken_at - 1, execution
    worker_log = (run / "logs" / f"worker-{other[len('tuner'):]}.log").read_text()
    assert "resumes from its checkpoint" in worker_log
