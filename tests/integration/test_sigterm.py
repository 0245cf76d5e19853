"""SIGTERM to each role of a running local search (what Kubernetes and compose send): the worker
stops at the next batch, gives its trial back and exits 143; the chief saves its state and exits;
the launcher's supervisor restarts both with the same ids, and the search still ends with every
trial COMPLETED exactly once and nothing half-written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

from waiting import read_json, wait


def _progress(run):
    return read_json(run / "progress.json")


def _role_pid(run, name):
    roles = json.loads((run / "cluster.json").read_text())["roles"]
    return next(r["pid"] for r in roles if r["name"] == name)


def _gone(pid):
    from tunecluster.backends.local.recorded import pid_alive

    return not pid_alive(pid)


def test_sigterm_to_a_worker_and_to_the_chief(tmp_path):
    run = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tunecluster", "up", "--example", "pima-units", "--no-confirm", "--workers", "2",
         "--max-trials", "5", "--epochs", "6", "--seed", "7", "--dir", str(run)],
        cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # 1. a worker mid-trial gets SIGTERM
        def mid_trial():
            worker = _progress(run).get("workers", {}).get("tuner0", {})
            return worker.get("state") == "running" and (worker.get("epoch") or 0) >= 1 and worker.get("trial")
        trial = wait(mid_trial, 180, "tuner0 to be mid-trial")
        worker_pid = _role_pid(run, "worker-0")
        os.kill(worker_pid, signal.SIGTERM)
        wait(lambda: _gone(worker_pid), 20, "the worker to exit")
        log = (run / "logs" / "worker-0.log").read_text()
        assert "stopped by SIGTERM" in log
        # the trial it held (progress.json is written every few tenths of a second: tuner0 may
        # have finished the trial it showed there and been stopped in its next one)
        given = re.findall(r"gave trial (\S+) \(execution 0\) back", log)
        assert len(given) == 1, (given, log[-2000:])
        wait(lambda: _progress(run).get("requeued", 0) >= 1, 10, "the chief to requeue the trial")

        # 2. the chief gets SIGTERM once a trial has completed
        wait(lambda: _progress(run).get("counts", {}).get("completed", 0) >= 1, 180, "a completed trial")
        chief_pid = _role_pid(run, "chief")
        os.kill(chief_pid, signal.SIGTERM)
        wait(lambda: _gone(chief_pid), 20, "the chief to exit")
        chief_log = (run / "logs" / "chief.log").read_text()
        assert "terminated: state saved" in chief_log
        oracle = json.loads((run / "kt" / "pima-units" / "oracle.json").read_text())  # loadable
        assert oracle["ongoing_trials"] is not None

        output, _ = launcher.communicate(timeout=400)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, output
    assert "worker-0 exited with code 143; restarting it" in output
    assert "chief exited with code 143; restarting it" in output
    assert "resumed the search" in (run / "logs" / "chief.log").read_text()
    document = json.loads((run / "results.json").read_text())
    ids = [t["trial_id"] for t in document["trials"]]
    assert len(ids) == len(set(ids)) == 5
    assert [t["status"] for t in document["trials"]] == ["COMPLETED"] * 5
    rows = {t["trial_id"]: t for t in document["trials"]}
    assert rows[given[0]]["requeues"] >= 1
    if trial != given[0]:  # tuner0 finished the trial progress.json showed before the signal
        assert rows[trial]["worker"] == "tuner0" and rows[trial]["requeues"] == 0
    end_order = json.loads((run / "kt" / "pima-units" / "oracle.json").read_text())["end_order"]
    assert sorted(end_order) == sorted(ids)  # each trial ended exactly once
    assert not list(run.rglob(".*.tmp*")) and not [p for p in run.rglob(".*") if p.is_file()]
    roles = json.loads((run / "cluster.json").read_text())
    assert all(_gone(pid) for pid in roles["all_pids"])
