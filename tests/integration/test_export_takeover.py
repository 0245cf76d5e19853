"""The worker exporting the best model is killed mid-export (SIGKILL, no restarts left): the one
worker the chief kept waiting takes the export over once the exporter's heartbeats stop for the
lease timeout, and the run ends well, with the model and its final training written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import yaml

from tunecluster.tuning.examples import csv_path
from waiting import read_json, wait_until


def test_a_standby_worker_takes_over_the_export_of_a_killed_exporter(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "takeover", "hypermodel": "tunecluster.tuning.examples.pima:build_units",
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"max_trials": 2, "seed": 5}, "fit": {"epochs": 2, "tensorboard": False},
        "confirm": {"enabled": False},
        # a final training long enough to be killed in the middle of (~10 s here)
        "final": {"epochs": 150, "from_checkpoint": True},
        "cluster": {"workers": 2, "max_restarts": 0, "heartbeat_interval": 0.5, "lease_timeout": 3}}))
    run = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "tunecluster", "up", "-f", "spec.yaml", "--dir", "run"],
                                cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def exporting():
            workers = read_json(run / "progress.json").get("workers") or {}
            return next((w for w, v in workers.items() if v.get("state") == "exporting"), None)

        exporter = wait_until("a worker exporting", exporting, 240, process=launcher)
        killed = next(r for r in read_json(run / "cluster.json")["roles"] if r["tuner_id"] == exporter)
        os.kill(killed["pid"], signal.SIGKILL)
        output, _ = launcher.communicate(timeout=400)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, output
    assert f"{killed['name']} exited with code -9 and used its 0 restarts; continuing with 1 worker(s)" in output
    other = ({"tuner0", "tuner1"} - {exporter}).pop()
    chief_log = (run / "logs" / "chief.log").read_text()
    assert f"{exporter} stopped answering while exporting; {other} exports instead" in chief_log
    survivor_log = (run / "logs" / f"worker-{other[-1]}.log").read_text()
    assert "exported trial" in survivor_log
    assert (run / "best" / "model.keras").is_file()
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    assert metrics["final"]["initial_epoch"] == 2 and metrics["final"]["epochs_run"] == 148
    assert metrics["validation"]["accuracy"] is not None
    assert [t["status"] for t in json.loads((run / "results.json").read_text())["trials"]] == ["COMPLETED"] * 2
