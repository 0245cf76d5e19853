"""ASHA on a real search (chief and two worker processes, real tiny TensorFlow trainings), with
the chief SIGKILLed part way: every promotion follows the rule (the promoted trial was among the
top 1/eta of its rung's completed trials when the promotion was handed out, and no trial is
promoted twice), a promoted trial continues from its parent's rung checkpoint (its curve holds
the parent's epochs and then its own), and the restarted chief loses no rung: every trial that
ended before the kill is there afterwards with the same rung and parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime

import yaml

from curve_models import ASHA_MODEL, LOADER
from tensorboard_events import texts
from waiting import read_json, wait_until

CONFIGS, ETA, RUNGS = 9, 3, [1, 3, 9]


def _rungs(document):
    """trial id -> (rung epochs, parent, status) of the trials in results.json."""
    return {r["trial_id"]: (r["all_hyperparameters"].get("tuner/epochs"), r["all_hyperparameters"].get("tuner/trial_id"),
                            r["status"]) for r in document.get("trials", [])}


def _ts(text):
    return datetime.fromisoformat(text).timestamp()


def test_asha_promotes_by_the_rule_continues_rung_checkpoints_and_survives_a_chief_kill(tmp_path):
    (tmp_path / "data.py").write_text(LOADER)
    (tmp_path / "model.py").write_text(ASHA_MODEL)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "asha", "hypermodel": "model.py:build", "data": {"loader": "data.py:load"},
        "tuner": {"kind": "asha", "max_trials": CONFIGS, "seed": 5,
                  "asha": {"min_epochs": 1, "max_epochs": 9, "reduction_factor": ETA}},
        "fit": {"batch_size": 32, "tensorboard": True},
        "confirm": {"enabled": False},
        "cluster": {"workers": 2, "tf_threads": 1, "heartbeat_interval": 0.2, "lease_timeout": 10}}))
    run = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tunecluster", "up", "-f", "spec.yaml", "--dir", "run"], cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "EPOCH_PAUSE": "0.1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def promoted_one_completed():
            table = _rungs(read_json(run / "results.json"))
            return table if any(p and s == "COMPLETED" for _, p, s in table.values()) else None
        before = wait_until("a promoted trial to complete", promoted_one_completed, 300)
        chief = next(r["pid"] for r in read_json(run / "cluster.json")["roles"] if r["name"] == "chief")
        os.kill(chief, signal.SIGKILL)
        output, _ = launcher.communicate(timeout=400)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, output[-3000:]
    assert "chief exited with code -9; restarting it with the same id" in output
    document = read_json(run / "results.json")
    after = _rungs(document)
    # the restarted chief lost no rung: what had ended is still there, unchanged
    for trial_id, (epochs, parent, status) in before.items():
        if status == "COMPLETED":
            assert after[trial_id] == (epochs, parent, "COMPLETED"), trial_id
    rows = {r["trial_id"]: r for r in document["trials"]}
    assert all(r["status"] == "COMPLETED" for r in rows.values())
    # who ran what and when survived the kill (the book's journal), also for the trials that
    # started or ended after the killed chief's last results.json
    assert all(r["started"] and r["ended"] and r["worker"] for r in rows.values()), rows
    bottom = [t for t, (e, p, _) in after.items() if p is None]
    assert len(bottom) == CONFIGS and all(after[t][0] == 1 for t in bottom)
    parents = [p for _, p, _ in after.values() if p]
    assert len(parents) == len(set(parents)), "a trial was promoted twice"
    assert parents, "nothing was promoted"
    reverse = document["direction"] == "max"
    for child, (epochs, parent, _) in after.items():
        if parent is None:
            continue
        rung = RUNGS.index(epochs) - 1
        assert after[parent][0] == RUNGS[rung]  # one rung up
        # by the rule: at the moment the oracle created the child, the parent was in the top
        # 1/eta of its rung's completed trials. That moment lies between the parent's end and
        # the child's (last) start; the trials completed then are the first n of the rung by end
        # time, for some n. (The start is stamped after the oracle's decision, and taken again
        # if the chief restarted before the child's worker got it: not the moment itself.)
        started = _ts(rows[child]["started"])
        by_end = sorted((r for t, r in rows.items() if after[t][0] == RUNGS[rung]), key=lambda r: _ts(r["ended"]))
        moments = []
        for n in range(1, len(by_end) + 1):
            done = by_end[:n]
            if _ts(done[-1]["ended"]) > started + 0.01:
                break
            if parent in [r["trial_id"] for r in done]:
                best = sorted(done, key=lambda r: r["score"], reverse=reverse)[: n // ETA]
                moments.append(parent in [r["trial_id"] for r in best])
        assert moments and any(moments), (child, parent, by_end)
        # and it continued from the parent's rung checkpoint: the parent's epochs, then its own
        execution = rows[child]["executions"][0]
        assert execution["promoted_from"] == RUNGS[rung], execution
        assert len(rows[child]["curve"]) == epochs
        # and TensorBoard's Text tab says so, at the first epoch it trained
        note = (RUNGS[rung], f"promoted from trial {parent}: continues its checkpoint after epoch {RUNGS[rung]}")
        assert note in texts(run / "tensorboard" / child), texts(run / "tensorboard" / child)
    logs = "".join((run / "logs" / f"worker-{i}.log").read_text() for i in range(2))
    assert "rung checkpoint" in logs
    assert not (run / "checkpoints").exists()  # the rung checkpoints left are removed at the end
