"""When a worker's restart budget is spent the search goes on with fewer workers and says so; the
lost worker's trial comes back through its expired lease and another worker runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import yaml

from tunecluster.tuning.examples import csv_path
from waiting import read_json, wait_until


def test_spent_restart_budget_continues_with_fewer_workers(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "budget", "hypermodel": "tunecluster.tuning.examples.pima:build_units",
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"max_trials": 4, "seed": 5}, "fit": {"epochs": 60}, "confirm": {"enabled": False},
        "cluster": {"workers": 2, "max_restarts": 0, "heartbeat_interval": 0.5, "lease_timeout": 3}}))
    run = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tunecluster", "up", "-f", "spec.yaml", "--dir", str(run)],
        cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def tuner1_early_in_a_training():
            worker = (read_json(run / "progress.json").get("workers") or {}).get("tuner1") or {}
            # early: progress.json lags the workers by a beat and a write (~1 s on a loaded
            # machine), so the kill must not land after the training's end (or the search's:
            # there would be nothing to take back)
            if worker.get("state") == "running" and 1 <= (worker.get("epoch") or 0) <= 20:
                return worker["trial"]
            return None

        trial = wait_until("tuner1 mid-trial", tuner1_early_in_a_training, 180, process=launcher)
        pid = next(r["pid"] for r in json.loads((run / "cluster.json").read_text())["roles"]
                   if r["name"] == "worker-1")
        os.kill(pid, signal.SIGKILL)
        output, _ = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, output
    assert "worker-1 exited with code -9 and used its 0 restarts; continuing with 1 worker(s)" in output
    document = json.loads((run / "results.json").read_text())
    assert [t["status"] for t in document["trials"]] == ["COMPLETED"] * 4
    # The trial tuner1 held when it died: the one the chief took back (progress.json, read above
    # to time the kill, is written every few tenths of a second, so tuner1 may have moved on
    # from the trial it showed by the time the kill lands).
    taken = re.findall(r"(\S+)#\d+ taken back from tuner1 and queued again: .*lease expired",
                       (run / "logs" / "chief.log").read_text())
    assert len(taken) == 1, taken
    requeued = [t for t in document["trials"] if t["requeues"]]
    assert [(t["trial_id"], t["worker"], t["requeues"]) for t in requeued] == [(taken[0], "tuner0", 1)]
    if trial != taken[0]:  # tuner1 finished the trial it showed and was killed in its next one
        assert next(t for t in document["trials"] if t["trial_id"] == trial)["worker"] == "tuner1"
