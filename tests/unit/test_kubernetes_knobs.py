"""Every cluster.kubernetes knob in the rendered objects: pull secrets on every pod, per-role
pod_overrides and their precedence over the global node_selector/tolerations, Kueue, TTL and
deadline, workers_per_gpu packing, chief GPUs, ReadWriteOnce pinning, the claim's sub-path, the
kubectl size hint, and the spec's one-line refusals."""

from __future__ import annotations

import pytest

from tunecluster.backends.kubernetes.helper_pod import helper_pod
from tunecluster.backends.kubernetes.render import (PACK_SCRIPT, kubectl_apply_hint, render,
                                                    single_node_affinity, tensorboard_objects)
from tunecluster.core.errors import UsageError
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.spec import validate_spec


def _spec(workers=3, **cluster):
    raw = example_spec("pima-units").model_dump(mode="json")
    kubernetes = cluster.pop("kubernetes", {})
    raw["cluster"].update(workers=workers, **cluster)
    raw["cluster"]["kubernetes"].update(kubernetes)
    return validate_spec(raw, "test")


def _objects(**cluster):
    return render(_spec(**cluster), namespace="ns", token="t", tensorboard=True)


def _pods(objects):
    """(role, pod spec, pod metadata) of every pod template, and of a helper pod."""
    for obj in objects:
        template = (obj.get("spec") or {}).get("template")
        if template:
            yield obj["metadata"]["labels"].get("tunecluster.io/role"), template["spec"], template["metadata"]


def _job(objects, role):
    return next(o for o in objects if o["kind"] == "Job" and o["metadata"]["labels"]["tunecluster.io/role"] == role)


def test_image_pull_secrets_on_every_pod_the_backend_makes():
    spec = _spec(kubernetes={"image_pull_secrets": ["regcred", "mirror-creds"]})
    objects = render(spec, namespace="ns", token="t", tensorboard=True)
    pods = [pod for _, pod, _ in _pods(objects)] + [helper_pod(spec, "ns")["spec"]]
    pods += [tensorboard_objects(spec, "ns")[0]["spec"]["template"]["spec"]]
    assert len(pods) == 5
    for pod in pods:
        assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-creds"}]
    assert all("imagePullSecrets" not in pod for _, pod, _ in _pods(_objects()))


def test_pod_overrides_per_role_and_their_precedence_over_the_global_placement():
    gpu = {"node_selector": {"pool": "gpu"}, "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}
    overrides = {
        "chief": {"node_selector": {"pool": "cpu"}, "tolerations": [], "priority_class_name": "low",
                  "labels": {"team": "ml"}, "annotations": {"note": "chief"}, "env": {"EXTRA": "1"}},
        "workers": {"priority_class_name": "high",
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
                            "matchLabels": {"tunecluster.io/role": "worker"}}}}]}},
                    "volumes": [{"name": "data", "nfs": {"server": "nas", "path": "/data"}}],
                    "volume_mounts": [{"name": "data", "mountPath": "/data", "readOnly": True}]},
        "tensorboard": {"node_selector": {}},
    }
    objects = _objects(kubernetes={**gpu, "pod_overrides": overrides})
    by_role = {role: (pod, meta) for role, pod, meta in _pods(objects)}
    chief, chief_meta = by_role["chief"]
    assert chief["nodeSelector"] == {"pool": "cpu"} and "tolerations" not in chief  # replaced: no GPU node
    assert chief["priorityClassName"] == "low" and chief_meta["annotations"] == {"note": "chief"}
    assert chief_meta["labels"]["team"] == "ml" and chief_meta["labels"]["tunecluster.io/role"] == "chief"
    assert {"name": "EXTRA", "value": "1"} in chief["containers"][0]["env"]
    worker, _ = by_role["worker"]
    assert worker["nodeSelector"] == {"pool": "gpu"}  # not given for workers: the global one
    assert worker["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert worker["priorityClassName"] == "high" and "podAntiAffinity" in worker["affinity"]
    assert {"name": "data", "nfs": {"server": "nas", "path": "/data"}} in worker["volumes"]
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in worker["containers"][0]["volumeMounts"]
    tensorboard, _ = by_role["tensorboard"]
    assert "nodeSelector" not in tensorboard and tensorboard["tolerations"]  # {} = no selector; tolerations global
    # the pull helper follows the chief's placement (it needs no GPU)
    assert helper_pod(_spec(kubernetes={**gpu, "pod_overrides": overrides}), "ns")["spec"]["nodeSelector"] == \
        {"pool": "cpu"}


@pytest.mark.parametrize("override, message", [
    ({"labels": {"tunecluster.io/role": "x"}}, "set by tunecluster"),
    ({"env": {"KERASTUNER_TUNER_ID": "x"}}, "set by tunecluster"),
    ({"env": {"1BAD": "x"}}, "not a valid variable name"),
    ({"volumes": [{"name": "shared", "emptyDir": {}}]}, "used by tunecluster"),
    ({"volumes": [{"name": "data"}]}, "has no source"),
    ({"volume_mounts": [{"name": "data", "mountPath": "/data"}]}, "not in this role's volumes"),
    ({"volumes": [{"name": "data", "emptyDir": {}}], "volume_mounts": [{"name": "data", "mountPath": "/shared/x"}]},
     "outside"),
    ({"affinity": {"nodeSelector": {}}}, "affinity takes"),
    ({"priority_class_name": "Not_Valid"}, "PriorityClass"),
    ({"colour": "red"}, "unknown key; allowed keys here"),
])
def test_bad_pod_overrides_get_one_line_that_says_what_to_change(override, message):
    raw = {"cluster": {"kubernetes": {"pod_overrides": {"workers": override}}}}
    with pytest.raises(UsageError, match=message) as caught:
        validate_spec(raw, "spec.yaml")
    assert "\n" not in str(caught.value) and "pod_overrides.workers" in str(caught.value)


def test_kueue_queue_name_labels_and_suspends_the_jobs():
    objects = _objects(kubernetes={"queue_name": "team-a"})
    for role in ("chief", "worker"):
        job = _job(objects, role)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert job["spec"]["suspend"] is True
    plain = _objects()
    assert "suspend" not in _job(plain, "chief")["spec"]
    assert "kueue.x-k8s.io/queue-name" not in _job(plain, "chief")["metadata"]["labels"]


def test_ttl_and_active_deadline_on_the_jobs():
    default = _job(_objects(), "chief")["spec"]
    assert default["ttlSecondsAfterFinished"] == 86400 and "activeDeadlineSeconds" not in default
    objects = _objects(kubernetes={"ttl_seconds_after_finished": None, "active_deadline_seconds": 3600})
    for role in ("chief", "worker"):
        spec = _job(objects, role)["spec"]
        assert "ttlSecondsAfterFinished" not in spec and spec["activeDeadlineSeconds"] == 3600


def test_workers_per_gpu_packs_workers_into_gpu_pods():
    objects = _objects(workers=5, workers_per_gpu=2, kubernetes={"worker": {"cpu": "500m", "memory": "1.5Gi"}})
    job = _job(objects, "worker")["spec"]
    assert job["completions"] == job["parallelism"] == 3  # 2 + 2 + 1 workers
    container = job["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-c", PACK_SCRIPT]
    assert container["resources"] == {"requests": {"cpu": "1000m", "memory": "3Gi"},
                                      "limits": {"cpu": "1000m", "memory": "3Gi", "nvidia.com/gpu": "1"}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TUNECLUSTER_WORKERS_PER_POD"] == "2" and env["TUNECLUSTER_WORKERS"] == "5"
    assert env["TUNECLUSTER_GPU_MEMORY_GROWTH"] == "1" and "KERASTUNER_TUNER_ID" not in env
    two_gpus = _job(_objects(workers=8, workers_per_gpu=2, kubernetes={"worker": {"gpus": 2}}), "worker")["spec"]
    assert two_gpus["completions"] == 2  # 4 workers share a pod's 2 GPUs
    assert two_gpus["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_the_packing_script_gives_each_pod_its_tuner_ids(monkeypatch):
    started = []

    class Proc:
        def __init__(self, command, env):
            started.append((env["KERASTUNER_TUNER_ID"], env["CUDA_VISIBLE_DEVICES"]))

        def wait(self):
            return 0

        def send_signal(self, _):
            pass

    import signal
    import subprocess

    monkeypatch.setattr(subprocess, "Popen", Proc)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setenv("TUNECLUSTER_WORKERS_PER_POD", "2")
    monkeypatch.setenv("TUNECLUSTER_WORKERS", "5")
    monkeypatch.setenv("TUNECLUSTER_POD_GPUS", "1")
    monkeypatch.setenv("TUNECLUSTER_INDEX", "2")
    with pytest.raises(SystemExit) as ended:
        exec(PACK_SCRIPT, {})
    assert started == [("tuner4", "0")] and ended.value.code == 0  # the last pod holds one worker
    started.clear()
    monkeypatch.setenv("TUNECLUSTER_WORKERS_PER_POD", "4")  # 2 GPUs x 2 workers each
    monkeypatch.setenv("TUNECLUSTER_WORKERS", "8")
    monkeypatch.setenv("TUNECLUSTER_POD_GPUS", "2")
    monkeypatch.setenv("TUNECLUSTER_INDEX", "1")
    with pytest.raises(SystemExit):
        exec(PACK_SCRIPT, {})
    assert started == [("tuner4", "0"), ("tuner5", "0"), ("tuner6", "1"), ("tuner7", "1")]


def test_chief_gpus_are_rendered():
    chief = _job(_objects(kubernetes={"chief": {"cpu": "2", "memory": "4Gi", "gpus": 1}}), "chief")
    assert chief["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    plain = _job(_objects(), "chief")["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in plain


def test_read_write_once_pins_every_pod_to_one_node():
    spec = _spec(kubernetes={"access_mode": "ReadWriteOnce",
                             "pod_overrides": {"workers": {"affinity": {"podAffinity": {
                                 "preferredDuringSchedulingIgnoredDuringExecution": []}}}}})
    objects = render(spec, namespace="ns", token="t", tensorboard=True)
    term = single_node_affinity("pima-units")["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term == {"labelSelector": {"matchLabels": {"tunecluster.io/experiment": "pima-units"}},
                    "topologyKey": "kubernetes.io/hostname"}
    pods = [pod for _, pod, _ in _pods(objects)] + [helper_pod(spec, "ns")["spec"]]
    for pod in pods:
        assert term in pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    worker = next(pod for role, pod, _ in _pods(objects) if role == "worker")
    assert "preferredDuringSchedulingIgnoredDuringExecution" in worker["affinity"]["podAffinity"]  # merged
    claim = next(o for o in objects if o["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # auto renders offline as ReadWriteMany, unpinned (`up` decides from the StorageClass)
    auto = _objects()
    assert next(o for o in auto if o["kind"] == "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
    assert all("affinity" not in pod for _, pod, _ in _pods(auto))


def test_each_experiment_gets_its_own_folder_of_an_existing_claim():
    objects = _objects(kubernetes={"existing_claim": "team"})
    for _, pod, _ in _pods(objects):
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "shared")
        assert mount["subPath"] == "tunecluster/pima-units" and mount["mountPath"] == "/shared"
    root = _objects(kubernetes={"existing_claim": "team", "claim_sub_path": ""})
    for _, pod, _ in _pods(root):
        assert "subPath" not in next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "shared")
    with pytest.raises(UsageError, match="no '..'"):
        _spec(kubernetes={"existing_claim": "team", "claim_sub_path": "../other"})


def test_render_says_when_kubectl_needs_server_side_apply(tmp_path):
    assert kubectl_apply_hint(_objects()) is None
    big = tmp_path / "rows.csv"
    big.write_text("a,Outcome\n" + "1,0\n" * 80_000)  # 320 KiB: carried, but over kubectl's annotation
    spec = _spec()
    spec.data.csv = str(big)
    objects = render(spec, namespace="ns")
    hint = kubectl_apply_hint(objects)
    assert hint.startswith("# ConfigMap/pima-units-config is over") and "--server-side" in hint
    assert hint.count("\n") == 1


@pytest.mark.parametrize("knob, message", [
    ({"image_pull_secrets": ["Bad_Name"]}, "not a Secret name"),
    ({"queue_name": "Team Queue"}, "LocalQueue"),
    ({"access_mode": "ReadOnlyMany"}, "access_mode"),
    ({"unschedulable_grace_seconds": -1}, "unschedulable_grace_seconds"),
    ({"code": "somewhere"}, "code"),
])
def test_bad_kubernetes_knobs_are_refused_in_one_line(knob, message):
    with pytest.raises(UsageError, match=message) as caught:
        validate_spec({"cluster": {"kubernetes": knob}}, "spec.yaml")
    assert "\n" not in str(caught.value)
