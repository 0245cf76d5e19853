"""The chaos scenario, shared by the chaos test and `benchmarks/faults.py`: a real local search
(`tunecluster up`, 12 short trials, 2 workers) during which workers are SIGKILLed mid-trial and
the chief once, with what was lost and how fast everything recovered measured from the outside
(progress.json, results.json, cluster.json, process table).

30 epochs per trial (a few seconds): the faults are placed by waiting for the search to reach
them (a worker mid-trial, three trials completed, the third worker kill after the chief is back),
and with 8 epochs (about 1 s a trial) the other worker finished the search while the killed ones
restarted, before the last fault (a CI run on 2026-12-04). More trials would not do: the
`pima-units` space holds 16 configurations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SEARCH = ["--example", "pima-units", "--max-trials", "12", "--epochs", "30", "--workers", "2", "--no-confirm",
          "--seed", "11"]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _alive(pid: int) -> bool:
    from tunecluster.backends.local.recorded import pid_alive

    return pid_alive(pid)


@dataclass
class Outcome:
    wall_s: float
    exit_code: int
    output: str
    results: dict
    end_order: list
    last_trial_end: float
    all_gone_at: float
    all_pids: list
    kills: list = field(default_factory=list)

    @property
    def gone_after_last_trial_s(self) -> float:
        return self.all_gone_at - self.last_trial_end

    def summary(self) -> dict:
        statuses = [t["status"] for t in self.results.get("trials", [])]
        return {"wall_s": round(self.wall_s, 1), "exit_code": self.exit_code,
                "completed": statuses.count("COMPLETED"), "trials": len(statuses),
                "processes_gone_after_last_trial_s": round(self.gone_after_last_trial_s, 1),
                "kills": self.kills}


class Search:
    """One `tunecluster up` in the background."""

    def __init__(self, workdir: Path, extra: list[str] | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.run = workdir / "run"
        self.output_path = workdir / "up.out"
        self.started = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunecluster", "up", *SEARCH, *(extra or []), "--dir", str(self.run)],
            cwd=workdir, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=open(self.output_path, "w"), stderr=subprocess.STDOUT)

    def progress(self) -> dict:
        return _read(self.run / "progress.json")

    def pid(self, role: str) -> int:
        roles = _read(self.run / "cluster.json").get("roles", [])
        return next(r["pid"] for r in roles if r["name"] == role)

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"`up` ended while waiting for {what}: {self.output_path.read_text()[-3000:]}")
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def finish(self, timeout: float = 600) -> Outcome:
        self.process.wait(timeout)
        ended = time.time()
        cluster = _read(self.run / "cluster.json")
        pids = cluster.get("all_pids", [])
        while any(_alive(p) for p in pids) and time.time() - ended < 60:
            time.sleep(0.05)
        all_gone = time.time()
        results = _read(self.run / "results.json")
        name = results.get("experiment", "pima-units")
        oracle = _read(self.run / "kt" / name / "oracle.json")
        last_end = max((_ts(t.get("ended")) or 0) for t in results.get("trials", [{}])) if results.get("trials") else ended
        return Outcome(ended - self.started, self.process.returncode, self.output_path.read_text(), results,
                       oracle.get("end_order", []), last_end, all_gone, pids)


def undisturbed(workdir: Path) -> Outcome:
    return Search(workdir).finish()


def _running_trial(progress: dict, tuner_id: str, min_epoch: int = 1):
    worker = (progress.get("workers") or {}).get(tuner_id) or {}
    epochs = worker.get("epochs") or 0
    if worker.get("state") == "running" and worker.get("trial") and min_epoch <= (worker.get("epoch") or 0) < epochs:
        return worker
    return None


def with_faults(workdir: Path, worker_kills: int = 3, chief_kill_after: int = 2) -> tuple[Outcome, dict]:
    """SIGKILL a worker mid-trial `worker_kills` times (alternating tuner0/tuner1), and the chief
    once after `chief_kill_after` worker kills; return the outcome and what happened."""
    search = Search(workdir)
    kills = []
    completed_before_chief_kill = {}
    for number in range(worker_kills):
        if number == chief_kill_after:
            search.wait(lambda: search.progress().get("counts", {}).get("completed", 0) >= 3, 300,
                        "three completed trials")
            completed_before_chief_kill = {
                t["trial_id"]: t["score"] for t in _read(search.run / "results.json").get("trials", [])
                if t["status"] == "COMPLETED"}
            pid = search.pid("chief")
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            search.wait(lambda: (search.progress().get("updated_at") or 0) > killed_at + 0.5
                               and search.pid("chief") != pid, 120, "the chief to come back")
            kills.append({"role": "chief", "at_s": round(killed_at - search.started, 1),
                          "back_after_s": round(time.time() - killed_at, 1),
                          "running_trials": sorted((search.progress().get("leases") or {}).keys())})
        tuner_id = f"tuner{number % 2}"
        worker = search.wait(lambda: _running_trial(search.progress(), tuner_id), 300, f"{tuner_id} mid-trial")
        trial = worker["trial"]
        started = next((_ts(t.get("started")) for t in _read(search.run / "results.json").get("trials", [])
                        if t["trial_id"] == trial), None)
        role = f"worker-{tuner_id[-1]}"
        pid = search.pid(role)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        restarts = ((search.progress().get("workers") or {}).get(tuner_id) or {}).get("restarts", 0)
        search.wait(lambda: ((search.progress().get("workers") or {}).get(tuner_id) or {}).get("restarts", 0) > restarts,
                    120, f"{tuner_id} to come back")
        back_after = time.time() - killed_at
        search.wait(lambda: any(w.get("trial") == trial and w.get("state") == "running"
                                for w in (search.progress().get("workers") or {}).values())
                    or any(t["trial_id"] == trial and t["status"] == "COMPLETED"
                           for t in _read(search.run / "results.json").get("trials", [])),
                    120, f"trial {trial} to run again")
        kills.append({"role": role, "trial": trial, "epoch_at_kill": worker.get("epoch"),
                      "at_s": round(killed_at - search.started, 1),
                      "lost_work_s": round(killed_at - started, 1) if started else None,
                      "worker_back_after_s": round(back_after, 1),
                      "trial_running_again_after_s": round(time.time() - killed_at, 1)})
    outcome = search.finish()
    outcome.kills = kills
    return outcome, completed_before_chief_kill
