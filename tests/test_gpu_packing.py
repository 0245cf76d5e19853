"""`cluster.workers_per_gpu`, wired on a machine without GPUs: which GPU each worker sees, memory
growth (or a per-process limit) in every worker's environment, the launcher's view of the
machine's GPUs, and a real 2-worker search whose workers report the GPU and memory setting they
were given (TensorFlow finds no GPU here, so they train on the CPU)."""

from __future__ import annotations

import json

import pytest
import yaml

from tunecluster.core import env as role_env
from tunecluster.backends.local.gpus import local_gpus
from tunecluster.cluster.plan import Placement, SecretFiles, build_plan
from tunecluster.tuning.spec import Experiment


def plan_for(workers: int, per_gpu, gpus):
    spec = Experiment.model_validate({"name": "pack", "cluster": {"workers": workers, "workers_per_gpu": per_gpu}})
    return build_plan(spec, Placement(spec_path="s.yaml", run_dir="/r", chief_bind="127.0.0.1",
                                      chief_host="127.0.0.1", port=1234, secrets=SecretFiles("/t"), gpus=gpus or ()))


def test_workers_share_gpus_k_at_a_time():
    plan = plan_for(5, 2, ["0", "1"])
    assert [w.env[role_env.CUDA_DEVICES] for w in plan.workers] == ["0", "0", "1", "1", "0"]
    assert all(w.env[role_env.GPU_MEMORY_GROWTH] == "1" for w in plan.workers)
    assert role_env.CUDA_DEVICES not in plan.chief.env
    # 8 workers on one GPU
    assert {w.env[role_env.CUDA_DEVICES] for w in plan_for(8, 8, ["3"]).workers} == {"3"}
    # unset: every worker sees every GPU, as before
    plain = plan_for(2, None, ["0", "1"])
    assert all(role_env.CUDA_DEVICES not in w.env and role_env.GPU_MEMORY_GROWTH not in w.env for w in plain.workers)
    # no GPU known (compose, Kubernetes): memory growth only
    assert all(role_env.CUDA_DEVICES not in w.env and w.env[role_env.GPU_MEMORY_GROWTH] == "1"
               for w in plan_for(2, 2, None).workers)


def test_local_gpus_follow_cuda_visible_devices():
    assert local_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert local_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert local_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_spec_refuses_a_bad_workers_per_gpu():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Experiment.model_validate({"cluster": {"workers_per_gpu": 0}})


@pytest.mark.slow
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
