"""The pod template every role of an experiment shares (chief, workers, TensorBoard, helper pods):
the locked-down container, the volumes (the shared claim or its sub-path, the spec, the token, the
project unpacked by an init container), image pull secrets, the role's `pod_overrides` and their
precedence over the global node_selector/tolerations, the single-node affinity of a ReadWriteOnce
volume, and how workers fill pods (`workers_per_gpu` packing)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

from tunecluster.backends.kubernetes.code_bundle import CODE_MOUNT, UNPACK_SCRIPT, CodeBundle
from tunecluster.backends.kubernetes.names import (CONFIG_MOUNT, HOSTNAME_TOPOLOGY, INDEX_VARIABLE, RUN_AS,
                                                   SECRET_MOUNT, SHARED_MOUNT, Names, labels)
from tunecluster.cluster.plan import ClusterPlan
from tunecluster.core import env as role_env
from tunecluster.tuning.spec import Experiment, Resources, RoleOverrides


def _resources(res: Resources, gpus: Optional[int] = None, times: int = 1) -> dict:
    """Requests (= limits) of a container running `times` copies of a role; `gpus` per pod."""
    values = {k: _scaled(v, times) for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v}
    limits = dict(values)
    count = res.gpus if gpus is None else gpus
    if count:
        limits["nvidia.com/gpu"] = str(count)
    return {"requests": values, "limits": limits} if values or limits else {}


def _scaled(quantity: str, times: int) -> str:
    """A quantity times `times` ("500m" x 3 = "1500m", "2Gi" x 2 = "4Gi")."""
    if times == 1:
        return quantity
    number, unit = re.fullmatch(r"([0-9.]+)(.*)", quantity).groups()
    value = float(number) * times
    return f"{int(value) if value.is_integer() else round(value, 3)}{unit}"


_BASE_ENV = [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"},
             {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}]  # every container (TensorBoard, the helper too)


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def claim_sub_path(spec: Experiment) -> Optional[str]:
    """The folder of an existing claim this experiment mounts as /shared (None: the whole claim)."""
    k8s = spec.cluster.kubernetes
    if not k8s.existing_claim or not k8s.claim_sub_path:
        return None
    return k8s.claim_sub_path.replace("{experiment}", spec.name)


def single_node_affinity(experiment: str) -> dict:
    """Every pod of the experiment on the node of the others (a ReadWriteOnce volume attaches to
    one node). The first pod matches its own selector, so it may go anywhere; the rest follow."""
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"tunecluster.io/experiment": experiment}},
        "topologyKey": HOSTNAME_TOPOLOGY}]}}


def _merge_affinity(own: Optional[dict], extra: Optional[dict]) -> Optional[dict]:
    if not own:
        return extra
    if not extra:
        return own
    merged = json.loads(json.dumps(own))
    for kind, terms in extra.items():
        target = merged.setdefault(kind, {})
        for when, value in terms.items():
            if isinstance(value, list):
                target[when] = list(target.get(when, [])) + value
            else:
                target[when] = value
    return merged


def pinned(spec: Experiment) -> bool:
    """Whether the experiment's pods share one node: a ReadWriteOnce volume."""
    return spec.cluster.kubernetes.access_mode == "ReadWriteOnce"


def _pod_spec(spec: Experiment, names: Names, container: dict, restart: str, *, shared_read_only: bool = False,
              secret: bool = True, config: bool = True, overrides: Optional[RoleOverrides] = None,
              bundle: Optional[CodeBundle] = None) -> dict:
    k8s = spec.cluster.kubernetes
    overrides = overrides or RoleOverrides()
    shared_mount = {"name": "shared", "mountPath": SHARED_MOUNT, "readOnly": shared_read_only}
    sub_path = claim_sub_path(spec)
    if sub_path:
        shared_mount["subPath"] = sub_path
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, shared_mount]
    volumes = [{"name": "tmp", "emptyDir": {}},
               {"name": "shared", "persistentVolumeClaim": {"claimName": k8s.existing_claim or names.claim}}]
    if config:
        mounts.append({"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True})
        volumes.append({"name": "config", "configMap": {"name": names.config}})
    if secret:
        mounts.append({"name": "oracle", "mountPath": SECRET_MOUNT, "readOnly": True})
        volumes.append({"name": "oracle", "secret": {"secretName": names.secret, "defaultMode": 0o440}})
    init = []
    own_env = list(container.get("env", []))
    if bundle is not None:
        parts = bundle.parts()
        volumes.append({"name": "code", "emptyDir": {"sizeLimit": f"{max(64, 4 * len(bundle.archive) // 2**20 + 64)}Mi"}})
        volumes.append({"name": "code-parts", "projected": {"sources": [
            {"configMap": {"name": names.code(i), "items": [{"key": "part", "path": f"part-{i:04d}"}]}}
            for i in range(len(parts))]}})
        mounts.append({"name": "code", "mountPath": CODE_MOUNT, "readOnly": True})
        own_env.append({"name": "PYTHONPATH", "value": CODE_MOUNT})
        init.append({
            "name": "unpack-code", "image": k8s.image, "imagePullPolicy": k8s.image_pull_policy,
            "command": ["python", "-c", UNPACK_SCRIPT],
            "env": [*_BASE_ENV, {"name": role_env.CODE_SHA256, "value": bundle.sha256}],
            "securityContext": _container_security(),
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "code", "mountPath": CODE_MOUNT},
                             {"name": "code-parts", "mountPath": "/parts", "readOnly": True}],
        })
    mounts += [dict(m) for m in overrides.volume_mounts]
    volumes += [dict(v) for v in overrides.volumes]
    own_env += _env_list(overrides.env)
    container = {
        "imagePullPolicy": k8s.image_pull_policy,
        "securityContext": _container_security(),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # a crash's last log lines in the pod's status
        **container,
        "image": k8s.image,
    }
    given = {entry["name"] for entry in own_env}
    container["env"] = [entry for entry in _BASE_ENV if entry["name"] not in given] + own_env
    pod = {
        "restartPolicy": restart,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        **({"initContainers": init} if init else {}),
        "containers": [container],
        "volumes": volumes,
    }
    # a role's own node_selector / tolerations (even empty) replace the global ones
    node_selector = overrides.node_selector if overrides.node_selector is not None else k8s.node_selector
    tolerations = overrides.tolerations if overrides.tolerations is not None else k8s.tolerations
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in tolerations]
    affinity = _merge_affinity(single_node_affinity(spec.name) if pinned(spec) else None, overrides.affinity)
    if affinity:
        pod["affinity"] = affinity
    if overrides.priority_class_name:
        pod["priorityClassName"] = overrides.priority_class_name
    if k8s.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in k8s.image_pull_secrets]
    if k8s.service_account:
        pod["serviceAccountName"] = k8s.service_account
    return pod


def _template(experiment: str, role: str, pod: dict, overrides: RoleOverrides) -> dict:
    metadata: dict = {"labels": {**overrides.labels, **labels(experiment, role)}}
    if overrides.annotations:
        metadata["annotations"] = dict(overrides.annotations)
    return {"metadata": metadata, "spec": pod}


def _env_list(env: dict[str, str]) -> list[dict]:
    return [{"name": name, "value": value} for name, value in env.items()]


@dataclass(frozen=True)
class WorkerPacking:
    """How the workers fill the worker pods: `per_pod` worker processes share each pod (and its
    GPUs) when `cluster.workers_per_gpu` is set, else one worker per pod."""

    workers: int
    per_pod: int
    gpus_per_pod: int

    @property
    def pods(self) -> int:
        return -(-self.workers // self.per_pod)


def worker_packing(spec: Experiment) -> WorkerPacking:
    per_gpu = spec.cluster.workers_per_gpu
    gpus = spec.cluster.kubernetes.worker.gpus
    if not per_gpu:
        return WorkerPacking(spec.cluster.workers, 1, gpus)
    gpus = gpus or 1  # workers_per_gpu asks for GPUs: one per pod unless worker.gpus says more
    return WorkerPacking(spec.cluster.workers, per_gpu * gpus, gpus)


# A pod of several workers (workers_per_gpu): start them, pass SIGTERM on, exit with the worst code
# (2, bad input, fails the index at once; see podFailurePolicy). Worker j of the pod sees GPU
# j * gpus // n of the pod's GPUs (workers_per_gpu of them on each).
PACK_SCRIPT = (
    "import os,signal,subprocess,sys\n"
    "n=int(os.environ['" + role_env.WORKERS_PER_POD + "']);total=int(os.environ['" + role_env.WORKERS + "'])\n"
    "gpus=int(os.environ['" + role_env.POD_GPUS + "']);first=int(os.environ['" + INDEX_VARIABLE + "'])*n\n"
    "procs=[subprocess.Popen(['tunecluster','worker'],env={**os.environ,'KERASTUNER_TUNER_ID':f'tuner{i}',"
    "'CUDA_VISIBLE_DEVICES':str((i-first)*gpus//n)}) for i in range(first,min(first+n,total))]\n"
    "signal.signal(signal.SIGTERM,lambda *a:[p.send_signal(signal.SIGTERM) for p in procs])\n"
    "codes=[p.wait() for p in procs]\n"
    "sys.exit(2 if 2 in codes else max([abs(c) for c in codes]+[0]))\n"
)


def _worker_env(plan: ClusterPlan, packing: WorkerPacking) -> list[dict]:
    """One environment for every pod of the Indexed Job: the tuner id from the completion index."""
    env = plan.shared_worker_env()
    index = [{"name": INDEX_VARIABLE, "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    if packing.per_pod > 1:
        return [*index, *_env_list({**env, role_env.WORKERS_PER_POD: str(packing.per_pod),
                                    role_env.WORKERS: str(packing.workers),
                                    role_env.POD_GPUS: str(packing.gpus_per_pod)})]
    return [*index, *_env_list({**env, role_env.TUNER_ID: f"tuner$({INDEX_VARIABLE})"})]
