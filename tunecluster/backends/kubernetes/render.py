"""The Kubernetes objects of one experiment, as plain API dictionaries (what `tunecluster render
--backend kubernetes` prints and what the launcher applies with server-side apply).

Only standard objects, all in one namespace and labelled with the experiment:

- ConfigMap `<name>-config`: the spec (paths rewritten to the mount), the user's model module
  and data loader files, and data files up to `inline_data_limit_kib`;
- Secret `<name>-oracle`: the oracle token (and the TLS certificate and key when enabled);
- PersistentVolumeClaim `<name>-shared` (unless `existing_claim`): the shared run directory;
- Job `<name>-chief` (1 pod, restartPolicy OnFailure; a restarted chief resumes from the volume)
  and Service `<name>-chief` for the oracle port;
- Job `<name>-workers`, Indexed (`completions = parallelism = workers`): the pod's completion
  index becomes `KERASTUNER_TUNER_ID=tuner<i>`; each index has its own retry budget
  (`backoffLimitPerIndex = max_restarts`), disruptions do not count (`podFailurePolicy`), and a
  bad-input exit (code 2) fails the index at once;
- NetworkPolicy `<name>-oracle`: only this experiment's workers reach the oracle port;
- optionally a TensorBoard Deployment and Service reading the volume.

Every pod runs as a non-root user with a read-only root filesystem, no privilege escalation and
all capabilities dropped; `/tmp` is an emptyDir and the volume is the only other writable mount.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from tunecluster.cluster.plan import (
    DEFAULT_PORT,
    RUN_AS_UID,
    ClusterPlan,
    Placement,
    SecretFiles,
    build_plan,
    threads_for_cpu,
)
from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment, code_refs, dump_spec

CONFIG_MOUNT = "/etc/tunecluster"
SECRET_MOUNT = "/var/run/secrets/tunecluster"
SHARED_MOUNT = "/shared"
RUN_AS = RUN_AS_UID  # the image's non-root user (see the Dockerfile)
INDEX_VARIABLE = role_env.WORKER_INDEX  # a worker pod's completion index, from its annotation
FIELD_MANAGER = "tunecluster"
CONFIGMAP_LIMIT = 1000 * 1024  # Kubernetes refuses ConfigMaps over 1 MiB


@dataclass(frozen=True)
class Names:
    experiment: str

    config = property(lambda self: f"{self.experiment}-config")
    secret = property(lambda self: f"{self.experiment}-oracle")
    claim = property(lambda self: f"{self.experiment}-shared")
    chief = property(lambda self: f"{self.experiment}-chief")
    workers = property(lambda self: f"{self.experiment}-workers")
    policy = property(lambda self: f"{self.experiment}-oracle")
    tensorboard = property(lambda self: f"{self.experiment}-tensorboard")


def labels(experiment: str, role: Optional[str] = None) -> dict[str, str]:
    result = {
        "app.kubernetes.io/name": "tunecluster",
        "app.kubernetes.io/instance": experiment,
        "app.kubernetes.io/managed-by": "tunecluster",
        "tunecluster.io/experiment": experiment,
    }
    if role:
        result["tunecluster.io/role"] = role
    return result


def selector(experiment: str, role: Optional[str] = None) -> str:
    """A label selector string for the experiment's objects (or one role's pods)."""
    parts = [f"tunecluster.io/experiment={experiment}"]
    if role:
        parts.append(f"tunecluster.io/role={role}")
    return ",".join(parts)


def chief_dns_names(names: Names, namespace: str) -> tuple[str, ...]:
    """Every name a worker (or a user in the cluster) may dial the chief by: the names its TLS
    certificate holds, for `up` and `render --include-secret` alike."""
    chief = names.chief
    return ("tunecluster-chief", chief, f"{chief}.{namespace}", f"{chief}.{namespace}.svc",
            f"{chief}.{namespace}.svc.cluster.local")


@dataclass
class Carried:
    """The spec as the pods see it, and the files the ConfigMap carries."""

    spec: Experiment
    files: dict[str, str]


def carry_files(spec: Experiment) -> Carried:
    """Put the user's files into the ConfigMap and point the spec at their mounted copies."""
    spec = spec.model_copy(deep=True)
    files: dict[str, str] = {}
    limit = spec.cluster.kubernetes.inline_data_limit_kib * 1024

    def carry(path: Path, what: str) -> str:
        name = path.name
        if name in files or name == "spec.yaml":
            raise UsageError(f"{what}: two carried files are named {name!r}; rename one")
        try:
            files[name] = path.read_text()
        except UnicodeDecodeError:
            raise UsageError(f"{what}: {path} is not a text file; put it on the volume or in the image "
                             "and give its absolute path") from None
        return f"{CONFIG_MOUNT}/{name}"

    for section, attr, what in code_refs(spec):
        ref = getattr(section, attr)
        if ref and ref.rsplit(":", 1)[0].endswith(".py"):
            target, func = ref.rsplit(":", 1)
            setattr(section, attr, f"{carry(Path(target), what)}:{func}")
    if spec.data.csv:
        csv = Path(spec.data.csv)
        if csv.is_file() and csv.stat().st_size <= limit:
            spec.data.csv = carry(csv, "data.csv")
        elif csv.is_file():
            raise UsageError(
                f"data.csv: {csv} is {csv.stat().st_size // 1024} KiB, over "
                f"cluster.kubernetes.inline_data_limit_kib ({limit // 1024}); copy it to the shared volume "
                f"or bake it into the image, and set data.csv to its absolute path in the pods "
                f"(e.g. {SHARED_MOUNT}/data/{csv.name})"
            )
        # a path that is not a file here must exist in the pods (volume or image): keep it
    spec.cluster.backend = "kubernetes"
    total = sum(len(text.encode()) for text in files.values())
    if total > CONFIGMAP_LIMIT:
        raise UsageError(f"the files carried in the ConfigMap add up to {total // 1024} KiB (limit ~1000 KiB); "
                         "move the data to the volume or the image")
    return Carried(spec, files)


def _resources(res, gpus: bool = True) -> dict:
    values = {k: v for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v}
    limits = dict(values)
    if gpus and res.gpus:
        limits["nvidia.com/gpu"] = str(res.gpus)
    return {"requests": values, "limits": limits} if values or limits else {}


_BASE_ENV = [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"},
             {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}]  # every container (TensorBoard, the helper too)


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_spec(spec: Experiment, names: Names, container: dict, restart: str, *, shared_read_only: bool = False,
              secret: bool = True, config: bool = True) -> dict:
    k8s = spec.cluster.kubernetes
    mounts = [{"name": "tmp", "mountPath": "/tmp"},
              {"name": "shared", "mountPath": SHARED_MOUNT, "readOnly": shared_read_only}]
    volumes = [{"name": "tmp", "emptyDir": {}},
               {"name": "shared", "persistentVolumeClaim": {"claimName": k8s.existing_claim or names.claim}}]
    if config:
        mounts.append({"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True})
        volumes.append({"name": "config", "configMap": {"name": names.config}})
    if secret:
        mounts.append({"name": "oracle", "mountPath": SECRET_MOUNT, "readOnly": True})
        volumes.append({"name": "oracle", "secret": {"secretName": names.secret, "defaultMode": 0o440}})
    container = {
        "imagePullPolicy": k8s.image_pull_policy,
        "securityContext": _container_security(),
        "volumeMounts": mounts,
        **container,
        "image": k8s.image,
    }
    own = container.get("env", [])
    given = {entry["name"] for entry in own}
    container["env"] = [entry for entry in _BASE_ENV if entry["name"] not in given] + own
    pod = {
        "restartPolicy": restart,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if k8s.node_selector:
        pod["nodeSelector"] = dict(k8s.node_selector)
    if k8s.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in k8s.tolerations]
    if k8s.service_account:
        pod["serviceAccountName"] = k8s.service_account
    return pod


def kubernetes_plan(spec: Experiment, names: Names) -> ClusterPlan:
    """The ClusterPlan in pods: the spec from the ConfigMap, the run folder on the volume, the
    token and certificate from the Secret, workers dialling the chief's Service."""
    return build_plan(spec, Placement(
        spec_path=f"{CONFIG_MOUNT}/spec.yaml", run_dir=SHARED_MOUNT, chief_bind="0.0.0.0", chief_host=names.chief,
        port=spec.cluster.port or DEFAULT_PORT,
        secrets=SecretFiles(token=f"{SECRET_MOUNT}/token", tls_cert=f"{SECRET_MOUNT}/tls.crt",
                            tls_key=f"{SECRET_MOUNT}/tls.key", server_name=names.chief),
        tf_threads=threads_for_cpu(spec.cluster.kubernetes.worker.cpu), extra_env={"HOME": "/tmp"}))


def _env_list(env: dict[str, str]) -> list[dict]:
    return [{"name": name, "value": value} for name, value in env.items()]


def _worker_env(plan: ClusterPlan) -> list[dict]:
    """One environment for every pod of the Indexed Job: the tuner id from the completion index."""
    env = plan.shared_worker_env()
    return [{"name": INDEX_VARIABLE, "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
            *_env_list({**env, role_env.TUNER_ID: f"tuner$({INDEX_VARIABLE})"})]


def _meta(name: str, namespace: str, experiment: str, role: Optional[str] = None) -> dict:
    return {"name": name, "namespace": namespace, "labels": labels(experiment, role)}


def render(spec: Experiment, *, namespace: str, token: Optional[str] = None,
           tls: Optional[tuple[bytes, bytes]] = None, tensorboard: Optional[bool] = None) -> list[dict]:
    """Every object of the experiment, in apply order. Without `token` the Secret is left out
    (`render` prints it only on request; the launcher always passes one)."""
    carried = carry_files(spec)
    spec = carried.spec
    names = Names(spec.name)
    exp = spec.name
    plan = kubernetes_plan(spec, names)
    port = plan.port
    k8s = spec.cluster.kubernetes
    if spec.cluster.tls and token is not None and tls is None:
        raise UsageError("cluster.tls is on but no certificate was made; use `tunecluster up` or pass one")
    objects: list[dict] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(names.config, namespace, exp),
        "data": {"spec.yaml": dump_spec(spec), **carried.files},
    }]
    if token is not None:
        data = {"token": token}
        if tls is not None:
            data.update({"tls.crt": tls[0].decode(), "tls.key": tls[1].decode()})
        objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": _meta(names.secret, namespace, exp), "stringData": data})
    if not k8s.existing_claim:
        claim = {"accessModes": [k8s.access_mode], "resources": {"requests": {"storage": k8s.storage_size}}}
        if k8s.storage_class:
            claim["storageClassName"] = k8s.storage_class
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": _meta(names.claim, namespace, exp), "spec": claim})

    chief_container = {
        "name": "chief", "command": ["tunecluster", "chief"],
        "env": _env_list(plan.chief.env),
        "ports": [{"name": "oracle", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "oracle"}, "periodSeconds": 2},
        "resources": _resources(plan.chief.resources, gpus=False),
    }
    objects.append({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(names.chief, namespace, exp, "chief"),
        "spec": {
            "backoffLimit": spec.cluster.max_restarts,
            "template": {"metadata": {"labels": labels(exp, "chief")},
                         "spec": _pod_spec(spec, names, chief_container, "OnFailure")},
        },
    })
    objects.append({
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(names.chief, namespace, exp, "chief"),
        "spec": {"type": "ClusterIP", "selector": {"tunecluster.io/experiment": exp, "tunecluster.io/role": "chief"},
                 "ports": [{"name": "oracle", "port": port, "targetPort": "oracle", "protocol": "TCP"}]},
    })
    worker_container = {
        "name": "worker", "command": ["tunecluster", "worker"],
        "env": _worker_env(plan),
        "resources": _resources(plan.workers[0].resources),
    }
    workers = spec.cluster.workers
    objects.append({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(names.workers, namespace, exp, "worker"),
        "spec": {
            "completionMode": "Indexed", "completions": workers, "parallelism": workers,
            "backoffLimitPerIndex": spec.cluster.max_restarts,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailIndex", "onExitCodes": {"containerName": "worker", "operator": "In", "values": [2]}},
            ]},
            "template": {"metadata": {"labels": labels(exp, "worker")},
                         "spec": _pod_spec(spec, names, worker_container, "Never")},
        },
    })
    objects.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta(names.policy, namespace, exp),
        "spec": {
            "podSelector": {"matchLabels": {"tunecluster.io/experiment": exp, "tunecluster.io/role": "chief"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"tunecluster.io/experiment": exp,
                                                                   "tunecluster.io/role": "worker"}}}],
                         "ports": [{"port": port, "protocol": "TCP"}]}],
        },
    })
    if tensorboard if tensorboard is not None else k8s.tensorboard:
        objects += _tensorboard(spec, names, namespace)
    return objects


def _tensorboard(spec: Experiment, names: Names, namespace: str) -> list[dict]:
    exp = spec.name
    container = {
        "name": "tensorboard",
        "command": ["tensorboard", "--logdir", f"{SHARED_MOUNT}/tensorboard", "--host", "0.0.0.0", "--port", "6006"],
        "ports": [{"name": "http", "containerPort": 6006, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    }
    pod = _pod_spec(spec, names, container, "Always", shared_read_only=True, secret=False, config=False)
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(names.tensorboard, namespace, exp, "tensorboard"),
         "spec": {"replicas": 1,
                  "selector": {"matchLabels": {"tunecluster.io/experiment": exp, "tunecluster.io/role": "tensorboard"}},
                  "template": {"metadata": {"labels": labels(exp, "tensorboard")}, "spec": pod}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(names.tensorboard, namespace, exp, "tensorboard"),
         "spec": {"type": "ClusterIP",
                  "selector": {"tunecluster.io/experiment": exp, "tunecluster.io/role": "tensorboard"},
                  "ports": [{"name": "http", "port": 6006, "targetPort": "http", "protocol": "TCP"}]}},
    ]


def tensorboard_objects(spec: Experiment, namespace: str) -> list[dict]:
    """Only the TensorBoard Deployment and Service (`tunecluster tensorboard --deploy`)."""
    return _tensorboard(spec, Names(spec.name), namespace)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the spec, the model module, the CSV) as readable `|` blocks."""


def _str(dumper, value: str):
    style = "|" if "\n" in value and not any(line.endswith(" ") for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[dict]) -> str:
    return "".join("---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False) for obj in objects)
