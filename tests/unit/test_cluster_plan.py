"""One ClusterPlan, rendered by all three backends: the same roles, variables, token/TLS and GPU
sharing, whatever the backend (they differ only in where things are: `Placement`)."""

from __future__ import annotations

import pytest

from tunecluster.backends.compose import render as compose
from tunecluster.backends.kubernetes import render as kubernetes
from tunecluster.cluster.plan import Placement, SecretFiles, build_plan, threads_for_cpu
from tunecluster.core import env as role_env
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.spec import validate_spec


def _spec(**cluster):
    raw = example_spec("pima-optimizer").model_dump(mode="json")
    raw["cluster"].update(cluster)
    return validate_spec(raw)


def _local(spec, **where):
    return build_plan(spec, Placement(spec_path="/run/spec.yaml", run_dir="/run", chief_bind="127.0.0.1",
                                      chief_host="127.0.0.1", port=4321,
                                      secrets=SecretFiles("/run/secrets/token", "/run/secrets/tls.crt",
                                                          "/run/secrets/tls.key"), **where))


def _k8s_env(spec, kind: str) -> dict:
    objects = kubernetes.render(spec, namespace="ns", token="t", tls=(b"c", b"k") if spec.cluster.tls else None)
    job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["labels"]["tunecluster.io/role"] == kind)
    return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_roles_and_the_variables_every_backend_gives_them():
    spec = _spec(workers=3)
    plan = _local(spec, tf_threads=2)
    assert [r.name for r in plan.roles] == ["chief", "worker-0", "worker-1", "worker-2"]
    assert [r.tuner_id for r in plan.roles] == ["chief", "tuner0", "tuner1", "tuner2"]
    assert plan.chief.env[role_env.ORACLE_IP] == "127.0.0.1" and plan.chief.command == ("chief",)
    compose_doc = compose.render_compose(spec, compose.ComposeOptions(run_root="/tmp/r", tf_threads=2))
    k8s_worker, k8s_chief = _k8s_env(spec, "worker"), _k8s_env(spec, "chief")
    for env in (plan.chief.env, compose_doc["services"]["chief"]["environment"], k8s_chief):
        assert env[role_env.TUNER_ID] == "chief" and env[role_env.TOKEN_FILE].endswith("token")
        assert {role_env.ORACLE_PORT, role_env.SPEC, role_env.RUN_DIR, "PYTHONUNBUFFERED"} <= set(env)
    for env in (plan.workers[1].env, compose_doc["services"]["worker-1"]["environment"], k8s_worker):
        assert env[role_env.TOKEN_FILE].endswith("token") and role_env.TF_THREADS in env
    assert compose_doc["services"]["worker-1"]["environment"][role_env.TUNER_ID] == "tuner1"
    assert k8s_worker[role_env.TUNER_ID] == "tuner$(TUNECLUSTER_INDEX)"  # from the completion index
    assert k8s_worker[role_env.ORACLE_IP] == "pima-optimizer-chief"


def test_insecure_and_tls_reach_every_backend_alike():
    insecure = _spec(insecure=True)
    for env in (_local(insecure).workers[0].env, _k8s_env(insecure, "worker"),
                compose.render_compose(insecure, compose.ComposeOptions(run_root="/tmp/r"))["services"]["worker-0"][
                    "environment"]):
        assert env[role_env.INSECURE] == "1" and role_env.TOKEN_FILE not in env
    tls = _spec(tls=True)
    local = _local(tls)
    assert local.chief.env[role_env.TLS_CERT] == "/run/secrets/tls.crt" and local.chief.env[role_env.TLS_KEY]
    assert local.workers[0].env[role_env.TLS_CA] == "/run/secrets/tls.crt"
    k8s = _k8s_env(tls, "worker")
    assert k8s[role_env.TLS_CA].endswith("tls.crt") and k8s[role_env.TLS_SERVER_NAME] == "pima-optimizer-chief"


def test_workers_per_gpu_reaches_every_backend():
    spec = _spec(workers=4, workers_per_gpu=2)
    local = _local(spec, gpus=["0", "1"])
    assert [w.env[role_env.CUDA_DEVICES] for w in local.workers] == ["0", "0", "1", "1"]
    assert all(w.env[role_env.GPU_MEMORY_GROWTH] == "1" for w in local.workers)
    doc = compose.render_compose(spec, compose.ComposeOptions(run_root="/tmp/r"))
    assert all(doc["services"][f"worker-{i}"]["environment"][role_env.GPU_MEMORY_GROWTH] == "1" for i in range(4))
    k8s = _k8s_env(spec, "worker")
    assert k8s[role_env.GPU_MEMORY_GROWTH] == "1" and role_env.CUDA_DEVICES not in k8s  # the device plugin's
    assert role_env.GPU_MEMORY_GROWTH not in _k8s_env(spec, "chief")


def test_threads_follow_the_spec_then_the_placement():
    assert _local(_spec(), tf_threads=3).workers[0].env[role_env.TF_THREADS] == "3"
    assert _local(_spec(tf_threads=5), tf_threads=3).workers[0].env[role_env.TF_THREADS] == "5"
    assert threads_for_cpu("1500m") == 1 and threads_for_cpu("4") == 4 and threads_for_cpu(None) is None
    assert _k8s_env(Overrides().apply(_spec()), "worker")[role_env.TF_THREADS] == "1"  # worker cpu "1"


def test_shared_worker_env_is_the_same_for_every_worker():
    plan = _local(_spec(workers=3, workers_per_gpu=1), gpus=["0", "1", "2"])
    shared = plan.shared_worker_env()
    assert role_env.TUNER_ID not in shared and role_env.CUDA_DEVICES not in shared
    for worker in plan.workers:
        assert {k: v for k, v in worker.env.items() if k in shared} == shared


@pytest.mark.parametrize("port, expected", [(None, "8000"), (9000, "9000")])
def test_kubernetes_port_comes_from_the_plan(port, expected):
    spec = _spec(port=port)
    assert _k8s_env(spec, "chief")[role_env.ORACLE_PORT] == expected
