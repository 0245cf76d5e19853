"""`cluster.workers_per_gpu`: which GPU each worker sees, memory growth in every worker's
environment, and the launcher's view of the machine's GPUs."""

from __future__ import annotations

import pytest

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


