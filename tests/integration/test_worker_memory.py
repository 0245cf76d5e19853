"""One worker process runs 30 small trials (pima-comprehensive, 1 epoch, up to 10 layers of up to
512 units) and its resident memory, read from /proc after each trial, stays bounded: a Keras
session or graph kept per trial would add several MiB per trial. Memory only, never time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tunecluster.tuning.examples import csv_path

# Without tunecluster/tuning/graph_memory.py every trial's traced train step stayed alive
# (TensorFlow's gradient registry holds it): ~10 MiB more per trial here. ~2 min on 2 cores;
# in the default suite. The 50-trial figures are in benchmarks/worker_leanness.py.



def rss_mib(pid: int):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None


def test_worker_memory_stays_bounded_over_30_trials(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "lean", "hypermodel": "tunecluster.tuning.examples.pima:build_comprehensive",
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"max_trials": 30, "seed": 2}, "fit": {"epochs": 1, "tensorboard": False},
        "confirm": {"enabled": False},
        "cluster": {"workers": 1}}))
    run = tmp_path / "run"
    log = (tmp_path / "up.log").open("w")  # a file, not a pipe nobody reads while it fills up
    up = subprocess.Popen([sys.executable, "-m", "tunecluster", "up", "-f", "spec.yaml", "--dir", str(run)],
                          cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True)
    rss: dict[int, float] = {}
    deadline = time.time() + 600
    while up.poll() is None and time.time() < deadline:
        time.sleep(0.2)
        try:
            pid = next(r["pid"] for r in json.loads((run / "cluster.json").read_text())["roles"]
                       if r["name"] == "worker-0")
            done = sum(1 for t in json.loads((run / "results.json").read_text())["trials"] if t.get("ended"))
        except (OSError, ValueError, KeyError, StopIteration):
            continue
        value = rss_mib(pid)
        if value and done not in rss:
            rss[done] = value
    up.wait(timeout=60)
    log.close()
    out = (tmp_path / "up.log").read_text()
    assert up.returncode == 0, out[-3000:]
    statuses = [t["status"] for t in json.loads((run / "results.json").read_text())["trials"]]
    assert statuses.count("COMPLETED") == 30
    early = [v for k, v in rss.items() if 5 <= k <= 10]
    late = [v for k, v in rss.items() if k >= 24]
    assert early and late, rss
    growth = max(late) - min(early)
    print(f"worker RSS after trials 5-10: {min(early):.0f}-{max(early):.0f} MiB, after 24+: "
          f"{min(late):.0f}-{max(late):.0f} MiB")
    assert growth < 0.15 * min(early), rss  # bounded: no per-trial accumulation
