"""The Kubernetes objects of an experiment: valid against the official schemas of Kubernetes
1.29-1.34 (kubernetes-validate, strict; every knob on), secure pods, the worker index -> tuner id wiring, the
files the ConfigMap carries, the NetworkPolicy, GPU/node settings, the RBAC Role, TensorBoard."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tunecluster.core.env import read_role_env
from tunecluster.core.errors import UsageError
from tunecluster.backends.kubernetes import rbac
from tunecluster.backends.kubernetes.helper_pod import helper_pod
from tunecluster.backends.kubernetes.render import carry_files, render
from tunecluster.tuning.examples import csv_path, example_spec
from tunecluster.tuning.spec import validate_spec

VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]


def _spec(**cluster):
    raw = example_spec("pima-units").model_dump(mode="json")
    raw["cluster"].update(workers=3, **cluster)
    return validate_spec(raw, "test")


def _objects(**cluster):
    return render(_spec(**cluster), namespace="tuning", token="t0ken", tensorboard=True,
                  tls=(b"CERT", b"KEY") if cluster.get("tls") else None)


def _by_kind(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_for_the_supported_kubernetes_versions(version, tmp_path):
    (tmp_path / "model.py").write_text("from layers import block\ndef build(hp):\n    return block(hp)\n")
    (tmp_path / "layers.py").write_text("def block(hp):\n    return None\n")
    role = {"node_selector": {"pool": "cpu"}, "tolerations": [], "priority_class_name": "research",
            "annotations": {"team/owner": "ml"}, "labels": {"team": "ml"}, "env": {"WANDB_MODE": "offline"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            "volumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "team-data", "readOnly": True}}],
            "volume_mounts": [{"name": "datasets", "mountPath": "/datasets", "readOnly": True}]}
    knobs = {"worker": {"cpu": "2", "memory": "4Gi", "gpus": 1}, "chief": {"cpu": "1", "memory": "1Gi", "gpus": 1},
             "node_selector": {"gpu": "h100"}, "access_mode": "ReadWriteOnce",
             "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],
             "image_pull_secrets": ["registry-creds"], "queue_name": "team-queue", "active_deadline_seconds": 7200,
             "ttl_seconds_after_finished": 3600, "code": "project",
             "pod_overrides": {"chief": role, "workers": {**role, "node_selector": None, "tolerations": None},
                               "tensorboard": role}}
    spec = _spec(tls=True, workers_per_gpu=2, kubernetes=knobs)
    spec.hypermodel = str(tmp_path / "model.py") + ":build"
    objects = render(spec, namespace="tuning", token="t0ken", tensorboard=True, tls=(b"CERT", b"KEY"))
    objects.append(helper_pod(spec, "tuning"))
    objects += [rbac.role("tuning"), rbac.role("tuning", experiments=["pima-units"]),
                rbac.role_binding("tuning", "alice"), rbac.storage_cluster_role(),
                rbac.storage_cluster_role_binding("alice")]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ConfigMap", "ConfigMap", "Secret", "PersistentVolumeClaim", "Job", "Service", "Job",
                            "NetworkPolicy", "Deployment", "Service", "Pod", "Role", "Role", "RoleBinding",
                            "ClusterRole", "ClusterRoleBinding"])
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    existing = _spec(kubernetes={"existing_claim": "team-volume"})
    for obj in render(existing, namespace="tuning", token="t", tensorboard=True):
        kubernetes_validate.validate(obj, version, strict=True)


def test_pods_are_locked_down():
    for obj in _objects():
        template = (obj.get("spec") or {}).get("template")
        if not template:
            continue
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"]["drop"] == ["ALL"]
            writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
            assert writable <= {"/tmp", "/shared"}, writable


def test_worker_index_becomes_the_tuner_id():
    workers = _by_kind(_objects(), "Job", "pima-units-workers")[0]
    spec = workers["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 3
    assert spec["backoffLimitPerIndex"] == 5
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["action"] == "FailIndex" and rules[1]["onExitCodes"]["values"] == [2]
    env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["TUNECLUSTER_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    names = [e for e in env]
    assert names.index("TUNECLUSTER_INDEX") < names.index("KERASTUNER_TUNER_ID")  # $(VAR) needs it first
    assert env["KERASTUNER_TUNER_ID"]["value"] == "tuner$(TUNECLUSTER_INDEX)"
    assert env["KERASTUNER_ORACLE_IP"]["value"] == "pima-units-chief"
    assert env["TUNECLUSTER_TOKEN_FILE"]["value"] == "/var/run/secrets/tunecluster/token"
    # and a worker started by the Job controller alone (JOB_COMPLETION_INDEX) gets the same id
    role = read_role_env({"JOB_COMPLETION_INDEX": "2", "KERASTUNER_ORACLE_IP": "x", "KERASTUNER_ORACLE_PORT": "8000"})
    assert role.tuner_id == "tuner2"


def test_chief_job_service_and_network_policy():
    objects = _objects()
    chief = _by_kind(objects, "Job", "pima-units-chief")[0]["spec"]
    assert chief["template"]["spec"]["restartPolicy"] == "OnFailure"
    env = {e["name"]: e.get("value") for e in chief["template"]["spec"]["containers"][0]["env"]}
    assert env["KERASTUNER_TUNER_ID"] == "chief" and env["KERASTUNER_ORACLE_IP"] == "0.0.0.0"
    service = _by_kind(objects, "Service", "pima-units-chief")[0]["spec"]
    assert service["selector"] == {"tunecluster.io/experiment": "pima-units", "tunecluster.io/role": "chief"}
    policy = _by_kind(objects, "NetworkPolicy")[0]["spec"]
    assert policy["podSelector"]["matchLabels"]["tunecluster.io/role"] == "chief"
    assert policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": {
        "tunecluster.io/experiment": "pima-units", "tunecluster.io/role": "worker"}}}],
        "ports": [{"port": 8000, "protocol": "TCP"}]}]


def test_gpus_nodes_and_storage_pass_through():
    objects = _objects(kubernetes={"worker": {"cpu": "4", "memory": "8Gi", "gpus": 2},
                                   "node_selector": {"pool": "gpu"}, "storage_class": "nfs",
                                   "storage_size": "20Gi",
                                   "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]})
    worker_pod = _by_kind(objects, "Job", "pima-units-workers")[0]["spec"]["template"]["spec"]
    resources = worker_pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2" and resources["requests"]["cpu"] == "4"
    assert worker_pod["nodeSelector"] == {"pool": "gpu"}
    assert worker_pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    env = {e["name"]: e.get("value") for e in worker_pod["containers"][0]["env"]}
    assert env["TUNECLUSTER_TF_THREADS"] == "4"
    chief_limits = _by_kind(objects, "Job", "pima-units-chief")[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in chief_limits
    claim = _by_kind(objects, "PersistentVolumeClaim")[0]["spec"]
    assert claim == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "20Gi"}},
                     "storageClassName": "nfs"}
    existing = _objects(kubernetes={"existing_claim": "team-volume"})
    assert not _by_kind(existing, "PersistentVolumeClaim")
    volumes = _by_kind(existing, "Job", "pima-units-chief")[0]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "shared", "persistentVolumeClaim": {"claimName": "team-volume"}} in volumes


def test_config_map_carries_the_model_and_data(tmp_path):
    (tmp_path / "model.py").write_text("def build(hp):\n    return None\n")
    (tmp_path / "rows.csv").write_text(csv_path().read_text())
    raw = {"name": "mine", "hypermodel": str(tmp_path / "model.py") + ":build",
           "data": {"csv": str(tmp_path / "rows.csv"), "target": "Outcome"}}
    carried = carry_files(validate_spec(raw, "test"))
    assert set(carried.files) == {"rows.csv"}  # the data; the code travels as the project (/code)
    assert carried.bundle.files == ["model.py"]  # the CSV is carried once, in the ConfigMap
    assert carried.spec.hypermodel == "/code/model.py:build"
    assert carried.spec.data.csv == "/etc/tunecluster/rows.csv"
    config = render(validate_spec(raw, "test"), namespace="n")[0]
    inner = validate_spec(yaml.safe_load(config["data"]["spec.yaml"]), "configmap")
    assert inner.cluster.backend == "kubernetes" and inner.data.csv == "/etc/tunecluster/rows.csv"
    raw["cluster"] = {"kubernetes": {"inline_data_limit_kib": 1}}
    with pytest.raises(UsageError, match="over cluster.kubernetes.inline_data_limit_kib"):
        carry_files(validate_spec(raw, "test"))


def test_config_map_carries_a_run_trial_file(tmp_path):
    (tmp_path / "trial.py").write_text("def run_trial(hp):\n    return 0.5\n")
    raw = {"name": "mine", "run_trial": str(tmp_path / "trial.py") + ":run_trial",
           "data": {"csv": str(csv_path()), "target": "Outcome"}}
    carried = carry_files(validate_spec(raw, "test"))
    assert carried.bundle.files == ["trial.py"] and carried.spec.run_trial == "/code/trial.py:run_trial"
    config = render(validate_spec(raw, "test"), namespace="n")[0]
    inner = validate_spec(yaml.safe_load(config["data"]["spec.yaml"]), "configmap")
    assert inner.run_trial == "/code/trial.py:run_trial" and inner.hypermodel is None


def test_tensorboard_deploy_applies_the_same_objects_up_adds():
    from tunecluster.backends.kubernetes.render import tensorboard_objects

    spec = _spec(kubernetes={"existing_claim": "kept"})
    added = [o for o in render(spec, namespace="tuning", token="t", tensorboard=True) if "tensorboard" in o["metadata"]["name"]]
    assert tensorboard_objects(spec, "tuning") == added
    assert [o["kind"] for o in added] == ["Deployment", "Service"]
    volumes = added[0]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "shared", "persistentVolumeClaim": {"claimName": "kept"}} in volumes
