"""`cluster.workers_per_gpu` in a real 2-worker search on a machine without GPUs: the workers
report the GPU and memory setting they were given (TensorFlow finds no GPU here, so they train on
the CPU)."""

from __future__ import annotations

import json

import yaml



def test_a_search_with_two_workers_on_one_gpu(tmp_path, cli):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "packed", "hypermodel": "tunecluster.tuning.examples.pima:build_optimizer",
        "data": {"csv": str(__import__("tunecluster.tuning.examples", fromlist=["csv_path"]).csv_path()),
                 "target": "Outcome"},
        "tuner": {"max_trials": 2}, "fit": {"epochs": 1, "tensorboard": False},
        "cluster": {"workers": 2, "workers_per_gpu": 2}}))
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300,
                 env={"CUDA_VISIBLE_DEVICES": "0"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    statuses = [t["status"] for t in json.loads((tmp_path / "run" / "results.json").read_text())["trials"]]
    assert statuses == ["COMPLETED", "COMPLETED"]
    for i in (0, 1):
        log = (tmp_path / "run" / "logs" / f"worker-{i}.log").read_text()
        assert "CUDA_VISIBLE_DEVICES=0, memory growth" in log, log[-2000:]
