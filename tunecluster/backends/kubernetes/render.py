"""The Kubernetes objects of one experiment, as plain API dictionaries (what `tunecluster render
--backend kubernetes` prints and what the launcher applies with server-side apply).

Only standard objects, all in one namespace and labelled with the experiment:

- ConfigMap `<name>-config`: the spec (paths rewritten to the mounts) and data files up to
  `inline_data_limit_kib`;
- ConfigMaps `<name>-code-<i>` (unless `cluster.kubernetes.code: image`): the user's project
  folder as parts of a tar.gz (`code_bundle.py`), unpacked by an init container into `/code`;
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

Every pod carries `image_pull_secrets`, its role's `pod_overrides` and, on a ReadWriteOnce volume,
a required pod affinity to the node of the experiment's other pods (they all share one node).
The Jobs carry `ttlSecondsAfterFinished`, `activeDeadlineSeconds` and, with `queue_name`, the
Kueue label and `suspend: true` (Kueue starts them).

Every pod runs as a non-root user with a read-only root filesystem, no privilege escalation and
all capabilities dropped; `/tmp` is an emptyDir and the volume is the only other writable mount.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from tunecluster.backends.script_carry import script_in_containers
from tunecluster.backends.kubernetes.code_bundle import CODE_MOUNT, CodeBundle, bundle_project, project_root
from tunecluster.backends.kubernetes.names import (CONFIG_MOUNT, FIELD_MANAGER, QUEUE_LABEL, RUN_AS,  # noqa: F401
                                                   SECRET_MOUNT, SHARED_MOUNT, Names, chief_dns_names, labels,
                                                   selector)
from tunecluster.backends.kubernetes.pod_template import (PACK_SCRIPT, _env_list, _pod_spec,  # noqa: F401
                                                          _resources, _template, _worker_env, claim_sub_path,
                                                          pinned, single_node_affinity, worker_packing)
from tunecluster.cluster.plan import (DEFAULT_PORT, ClusterPlan, Placement, SecretFiles, build_plan,
                                      threads_for_cpu)
from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment, code_refs, dump_spec

CONFIGMAP_LIMIT = 1000 * 1024  # Kubernetes refuses ConfigMaps over 1 MiB
KUBECTL_APPLY_LIMIT = 256 * 1024  # kubectl's client-side apply keeps the object in a 256 KiB annotation


@dataclass
class Carried:
    """The spec as the pods see it, the data files the ConfigMap carries, and the project."""

    spec: Experiment
    files: dict[str, str]
    bundle: Optional[CodeBundle] = None
    notes: list[str] = field(default_factory=list)
    script: tuple[str, ...] = ()  # `up --script`: the script's path in the pods, then its arguments


def carry_files(spec: Experiment, script: tuple[str, ...] = ()) -> Carried:
    """Decide what reaches the pods and point the spec at it: the project folder (unless the image
    has the code) and small data files; for `up --script`, the script's folder (or
    cluster.kubernetes.project_dir above it) and its arguments as the pods read them. Writes
    nothing; every size check is here, so `up` calls it before the run folder is written
    (KubernetesBackend.check)."""
    spec = spec.model_copy(deep=True)
    k8s = spec.cluster.kubernetes
    files: dict[str, str] = {}
    notes: list[str] = []
    limit = k8s.inline_data_limit_kib * 1024

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

    csv = Path(spec.data.csv) if spec.data.csv else None
    bundle = None
    in_pods: tuple[str, ...] = ()
    if script and k8s.code == "image":
        raise UsageError("--script carries the script's folder to the pods, but cluster.kubernetes.code is 'image'; "
                         "set it to auto (or leave it out), or run the script in the image yourself")
    if script:
        mapped = script_in_containers(script, CODE_MOUNT, project_root([], k8s.project_dir))
        in_pods, root = mapped.command, mapped.root
        bundle = bundle_project(root, limit_kib=k8s.code_limit_kib, file_limit_kib=k8s.code_file_limit_kib)
    elif k8s.code != "image":
        refs = [getattr(section, attr) for section, attr, _ in code_refs(spec) if getattr(section, attr)]
        root = project_root(refs, k8s.project_dir)
        if root is None and k8s.code == "project":
            raise UsageError("cluster.kubernetes.code is 'project' but no code of the spec was found on this "
                             "machine; name the folder with cluster.kubernetes.project_dir, or set code: image")
        if root is not None:
            bundle = bundle_project(root, limit_kib=k8s.code_limit_kib, file_limit_kib=k8s.code_file_limit_kib,
                                    exclude=[csv] if csv and csv.is_file() else [])
            for section, attr, _ in code_refs(spec):
                ref = getattr(section, attr)
                target = Path(ref.rsplit(":", 1)[0]) if ref and ref.rsplit(":", 1)[0].endswith(".py") else None
                if target is not None and target.is_absolute() and root in target.resolve().parents:
                    inner = target.resolve().relative_to(root).as_posix()
                    setattr(section, attr, f"{CODE_MOUNT}/{inner}:{ref.rsplit(':', 1)[1]}")
    if bundle is not None and bundle.left_out:
        shown = ", ".join(bundle.left_out[:5]) + (" ..." if len(bundle.left_out) > 5 else "")
        what = "the script's folder" if script else "the project"
        notes.append(f"left out of {what} carried to the pods (over cluster.kubernetes.code_file_limit_kib): {shown}")
    if csv:
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
    return Carried(spec, files, bundle, notes, in_pods)


def check_carried(spec: Experiment, script: tuple[str, ...] = ()) -> list[str]:
    """Every size check of what the pods get, without writing anything (call before the run folder
    is written); returns notes for the user (files left out)."""
    return carry_files(spec, script).notes

def kubernetes_plan(spec: Experiment, names: Names, script: tuple[str, ...] = ()) -> ClusterPlan:
    """The ClusterPlan in pods: the spec from the ConfigMap, the run folder on the volume, the
    token and certificate from the Secret, workers dialling the chief's Service; with `script`
    (`up --script`: the script's path in the pods and its arguments, `Carried.script`), every
    role runs it from the carried project (/code)."""
    return build_plan(spec, Placement(
        spec_path=f"{CONFIG_MOUNT}/spec.yaml", run_dir=SHARED_MOUNT, chief_bind="0.0.0.0", chief_host=names.chief,
        port=spec.cluster.port or DEFAULT_PORT,
        secrets=SecretFiles(token=f"{SECRET_MOUNT}/token", tls_cert=f"{SECRET_MOUNT}/tls.crt",
                            tls_key=f"{SECRET_MOUNT}/tls.key", server_name=names.chief),
        tf_threads=threads_for_cpu(spec.cluster.kubernetes.worker.cpu), extra_env={"HOME": "/tmp"}),
        script=script)

def _meta(name: str, namespace: str, experiment: str, role: Optional[str] = None) -> dict:
    return {"name": name, "namespace": namespace, "labels": labels(experiment, role)}


def _job_spec(spec: Experiment, body: dict) -> dict:
    """What every Job gets: TTL after it finished, the deadline, Kueue's suspend."""
    k8s = spec.cluster.kubernetes
    if k8s.ttl_seconds_after_finished is not None:
        body["ttlSecondsAfterFinished"] = k8s.ttl_seconds_after_finished
    if k8s.active_deadline_seconds is not None:
        body["activeDeadlineSeconds"] = k8s.active_deadline_seconds
    if k8s.queue_name:
        body["suspend"] = True  # Kueue admits the Job by unsuspending it
    return body


def _job_meta(spec: Experiment, name: str, namespace: str, role: str) -> dict:
    meta = _meta(name, namespace, spec.name, role)
    if spec.cluster.kubernetes.queue_name:
        meta["labels"][QUEUE_LABEL] = spec.cluster.kubernetes.queue_name
    return meta


def render(spec: Experiment, *, namespace: str, token: Optional[str] = None,
           tls: Optional[tuple[bytes, bytes]] = None, tensorboard: Optional[bool] = None,
           script: tuple[str, ...] = ()) -> list[dict]:
    """Every object of the experiment, in apply order. Without `token` the Secret is left out
    (`render` prints it only on request; the launcher always passes one). `script`: `up
    --script`'s script (its path here) and arguments, run by every role as `tunecluster script
    /code/NAME ...` (see `carry_files`)."""
    carried = carry_files(spec, script)
    spec = carried.spec
    names = Names(spec.name)
    exp = spec.name
    plan = kubernetes_plan(spec, names, carried.script)
    port = plan.port
    k8s = spec.cluster.kubernetes
    overrides = k8s.pod_overrides
    if spec.cluster.tls and token is not None and tls is None:
        raise UsageError("cluster.tls is on but no certificate was made; use `tunecluster up` or pass one")
    objects: list[dict] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(names.config, namespace, exp),
        "data": {"spec.yaml": dump_spec(spec), **carried.files},
    }]
    bundle = carried.bundle
    if bundle is not None:
        for i, part in enumerate(bundle.parts()):
            meta = _meta(names.code(i), namespace, exp)
            meta["annotations"] = {"tunecluster.io/code-sha256": bundle.sha256,
                                   "tunecluster.io/code-parts": str(len(bundle.parts()))}
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                            "binaryData": {"part": base64.b64encode(part).decode()}})
    if token is not None:
        data = {"token": token}
        if tls is not None:
            data.update({"tls.crt": tls[0].decode(), "tls.key": tls[1].decode()})
        objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": _meta(names.secret, namespace, exp), "stringData": data})
    if not k8s.existing_claim:
        mode = "ReadWriteMany" if k8s.access_mode == "auto" else k8s.access_mode
        claim = {"accessModes": [mode], "resources": {"requests": {"storage": k8s.storage_size}}}
        if k8s.storage_class:
            claim["storageClassName"] = k8s.storage_class
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": _meta(names.claim, namespace, exp), "spec": claim})

    chief_container = {
        "name": "chief", "command": ["tunecluster", *plan.chief.command],
        "env": _env_list(plan.chief.env),
        "ports": [{"name": "oracle", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "oracle"}, "periodSeconds": 2},
        "resources": _resources(plan.chief.resources),
    }
    chief_pod = _pod_spec(spec, names, chief_container, "OnFailure", overrides=overrides.chief, bundle=bundle)
    objects.append({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _job_meta(spec, names.chief, namespace, "chief"),
        "spec": _job_spec(spec, {
            "backoffLimit": spec.cluster.max_restarts,
            "template": _template(exp, "chief", chief_pod, overrides.chief),
        }),
    })
    objects.append({
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(names.chief, namespace, exp, "chief"),
        "spec": {"type": "ClusterIP", "selector": {"tunecluster.io/experiment": exp, "tunecluster.io/role": "chief"},
                 "ports": [{"name": "oracle", "port": port, "targetPort": "oracle", "protocol": "TCP"}]},
    })
    packing = worker_packing(spec)
    if script and packing.per_pod != 1:
        raise UsageError("--script with cluster.workers_per_gpu (several workers in one pod) is not supported; "
                         "leave workers_per_gpu unset")
    worker_container = {
        "name": "worker",
        "command": ["tunecluster", *plan.workers[0].command] if packing.per_pod == 1 else ["python", "-c", PACK_SCRIPT],
        "env": _worker_env(plan, packing),
        "resources": _resources(plan.workers[0].resources, gpus=packing.gpus_per_pod, times=packing.per_pod),
    }
    worker_pod = _pod_spec(spec, names, worker_container, "Never", overrides=overrides.workers, bundle=bundle)
    objects.append({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _job_meta(spec, names.workers, namespace, "worker"),
        "spec": _job_spec(spec, {
            "completionMode": "Indexed", "completions": packing.pods, "parallelism": packing.pods,
            "backoffLimitPerIndex": spec.cluster.max_restarts,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailIndex", "onExitCodes": {"containerName": "worker", "operator": "In", "values": [2]}},
            ]},
            "template": _template(exp, "worker", worker_pod, overrides.workers),
        }),
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
    overrides = spec.cluster.kubernetes.pod_overrides.tensorboard
    container = {
        "name": "tensorboard",
        "command": ["tensorboard", "--logdir", f"{SHARED_MOUNT}/tensorboard", "--host", "0.0.0.0", "--port", "6006"],
        "ports": [{"name": "http", "containerPort": 6006, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    }
    pod = _pod_spec(spec, names, container, "Always", shared_read_only=True, secret=False, config=False,
                    overrides=overrides)
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(names.tensorboard, namespace, exp, "tensorboard"),
         "spec": {"replicas": 1,
                  "selector": {"matchLabels": {"tunecluster.io/experiment": exp, "tunecluster.io/role": "tensorboard"}},
                  "template": _template(exp, "tensorboard", pod, overrides)}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(names.tensorboard, namespace, exp, "tensorboard"),
         "spec": {"type": "ClusterIP",
                  "selector": {"tunecluster.io/experiment": exp, "tunecluster.io/role": "tensorboard"},
                  "ports": [{"name": "http", "port": 6006, "targetPort": "http", "protocol": "TCP"}]}},
    ]


def tensorboard_objects(spec: Experiment, namespace: str) -> list[dict]:
    """Only the TensorBoard Deployment and Service (`tunecluster tensorboard --deploy`)."""
    return _tensorboard(spec, Names(spec.name), namespace)


def kubectl_apply_hint(objects: list[dict]) -> Optional[str]:
    """A comment for `render`'s output when an object is too big for `kubectl apply` without
    --server-side (kubectl keeps a copy of it in a 256 KiB annotation)."""
    big = [f"{o['kind']}/{o['metadata']['name']}" for o in objects
           if len(json.dumps(o, separators=(",", ":"))) > KUBECTL_APPLY_LIMIT - 4096]
    if not big:
        return None
    return (f"# {', '.join(big)} {'is' if len(big) == 1 else 'are'} over kubectl's 256 KiB last-applied "
            "annotation: apply with `kubectl apply --server-side -f -`\n")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the spec, the model module, the CSV) as readable `|` blocks."""


def _str(dumper, value: str):
    style = "|" if "\n" in value and not any(line.endswith(" ") for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[dict]) -> str:
    return "".join("---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False) for obj in objects)
