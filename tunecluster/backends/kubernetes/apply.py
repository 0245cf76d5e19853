"""Applying and deleting an experiment's objects: server-side apply (an apply PATCH through the
typed API) under the field manager `tunecluster`, the chief Job as the owner of the other objects (but
the volume claim), the oracle token and certificate kept across re-applies (a re-applied Secret
must not lock out running workers), and deletion of everything labelled with the experiment."""

from __future__ import annotations

import base64
import time
from typing import Callable, Optional

from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.backends.kubernetes.pods import watch_once
from tunecluster.backends.kubernetes.render import FIELD_MANAGER, Names, chief_dns_names, render, selector
from tunecluster.backends.kubernetes.storage import StorageDecision
from tunecluster.cluster.run_secrets import make_certificate, new_token
from tunecluster.tuning.spec import Experiment


# the typed API (class, snake_case kind) of every kind tunecluster applies
KINDS = {
    ("v1", "ConfigMap"): ("CoreV1Api", "config_map"),
    ("v1", "Secret"): ("CoreV1Api", "secret"),
    ("v1", "PersistentVolumeClaim"): ("CoreV1Api", "persistent_volume_claim"),
    ("v1", "Service"): ("CoreV1Api", "service"),
    ("v1", "Pod"): ("CoreV1Api", "pod"),
    ("batch/v1", "Job"): ("BatchV1Api", "job"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("NetworkingV1Api", "network_policy"),
    ("apps/v1", "Deployment"): ("AppsV1Api", "deployment"),
}
OWNER_MANAGER = FIELD_MANAGER + "-owner"  # a field manager of its own: it holds only ownerReferences


def _typed(cluster: Cluster, obj: dict, verb: str):
    from kubernetes import client

    api_class, kind = KINDS[(obj["apiVersion"], obj["kind"])]
    return getattr(getattr(client, api_class)(cluster.api), f"{verb}_namespaced_{kind}")


def server_side_apply(cluster: Cluster, obj: dict, manager: str = FIELD_MANAGER):
    """A PATCH of type application/apply-patch+yaml (creates or updates); returns the stored object."""
    meta = obj["metadata"]
    return _typed(cluster, obj, "patch")(meta["name"], meta["namespace"], obj, field_manager=manager, force=True,
                                         _content_type="application/apply-patch+yaml")


def _read(cluster: Cluster, obj: dict):
    from kubernetes.client.exceptions import ApiException

    try:
        return _typed(cluster, obj, "read")(obj["metadata"]["name"], obj["metadata"]["namespace"])
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def owner_reference(job) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "uid": job.metadata.uid,
            "blockOwnerDeletion": False, "controller": False}


def owned(obj: dict, chief_job: str) -> bool:
    """Whether the chief Job owns `obj` (deleted with it, by `down` or by its TTL): everything of
    the experiment but the chief Job itself and the volume claim (the results live there)."""
    if obj["kind"] == "Job" and obj["metadata"]["name"] == chief_job:
        return False
    return obj["kind"] != "PersistentVolumeClaim"


def apply_objects(cluster: Cluster, objects: list[dict]) -> None:
    """Server-side apply each object. Once the chief Job is applied, it owns the others (those
    applied before it get their ownerReference in a second, owner-only apply). A Job that exists
    keeps its `suspend` (Kueue may have admitted it)."""
    chief_name = next((o["metadata"]["name"] for o in objects if o["kind"] == "Job"
                       and (o["metadata"].get("labels") or {}).get("tunecluster.io/role") == "chief"), None)
    owner: Optional[dict] = None
    before: list[dict] = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            body = obj
            if kind == "Job" and "suspend" in obj.get("spec", {}) and _read(cluster, obj) is not None:
                body = {**obj, "spec": {k: v for k, v in obj["spec"].items() if k != "suspend"}}
            if owner is not None and owned(obj, chief_name):
                body = {**body, "metadata": {**body["metadata"], "ownerReferences": [owner]}}
            stored = server_side_apply(cluster, body)
        except Exception as exc:
            raise explain(exc, f"applying {kind} {name}") from None
        if name == chief_name and kind == "Job":
            owner = owner_reference(stored)
            for earlier in before:
                try:
                    server_side_apply(cluster, {"apiVersion": earlier["apiVersion"], "kind": earlier["kind"],
                                                "metadata": {"name": earlier["metadata"]["name"],
                                                             "namespace": earlier["metadata"]["namespace"],
                                                             "ownerReferences": [owner]}}, OWNER_MANAGER)
                except Exception as exc:
                    raise explain(exc, f"setting the owner of {earlier['kind']} {earlier['metadata']['name']}") from None
        elif chief_name and owner is None and owned(obj, chief_name):
            before.append(obj)


def secret_material(cluster: Cluster, spec: Experiment) -> tuple[str, Optional[tuple[bytes, bytes]]]:
    """Keep the token (and certificate) of an existing experiment: a re-applied Secret must not
    lock out running workers. Otherwise make new ones."""
    from kubernetes.client.exceptions import ApiException

    names = Names(spec.name)
    try:
        secret = cluster.core.read_namespaced_secret(names.secret, cluster.namespace)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        token = data["token"].decode()
        tls = (data["tls.crt"], data["tls.key"]) if "tls.crt" in data else None
    except ApiException as exc:
        if exc.status != 404:
            raise explain(exc, "reading the oracle token") from None
        token, tls = new_token(), None
    except KeyError:
        token, tls = new_token(), None
    if spec.cluster.tls and tls is None:
        tls = make_certificate(chief_dns_names(names, cluster.namespace))
    return token, tls


def experiment_objects(cluster: Cluster, spec: Experiment, tensorboard: Optional[bool] = None,
                       storage: Optional[StorageDecision] = None, script: tuple[str, ...] = ()) -> list[dict]:
    """The objects `up` applies; `storage` (storage.decide_storage, made before the run folder was
    written) fixes the access mode (ReadWriteOnce pins every pod to one node); `script`: `up
    --script`'s script and arguments."""
    if storage is not None:
        spec = storage.apply(spec)
    token, tls = secret_material(cluster, spec)
    return render(spec, namespace=cluster.namespace, token=token, tls=tls, tensorboard=tensorboard, script=script)


def _named(name: str):
    from types import SimpleNamespace

    return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=name))])


def delete_experiment(cluster: Cluster, experiment: str, *, keep_volume: bool, timeout: float = 120) -> list[str]:
    """Delete every object labelled with the experiment (the claim too unless `keep_volume`)."""
    from kubernetes import client

    ns = cluster.namespace
    sel = selector(experiment)
    core, batch = cluster.core, cluster.batch
    networking, apps = client.NetworkingV1Api(cluster.api), client.AppsV1Api(cluster.api)
    kinds: list[tuple[str, Callable, Callable]] = [
        ("Job", batch.list_namespaced_job, lambda n: batch.delete_namespaced_job(
            n, ns, propagation_policy="Background")),
        ("Deployment", apps.list_namespaced_deployment, lambda n: apps.delete_namespaced_deployment(n, ns)),
        ("Pod", core.list_namespaced_pod, lambda n: core.delete_namespaced_pod(n, ns, grace_period_seconds=5)),
        ("Service", core.list_namespaced_service, lambda n: core.delete_namespaced_service(n, ns)),
        ("NetworkPolicy", networking.list_namespaced_network_policy,
         lambda n: networking.delete_namespaced_network_policy(n, ns)),
        ("ConfigMap", core.list_namespaced_config_map, lambda n: core.delete_namespaced_config_map(n, ns)),
        # by name: the Role need not let anyone list (read) the namespace's Secrets
        ("Secret", lambda *_a, **_k: _named(Names(experiment).secret),
         lambda n: core.delete_namespaced_secret(n, ns)),
    ]
    if not keep_volume:
        kinds.append(("PersistentVolumeClaim", core.list_namespaced_persistent_volume_claim,
                      lambda n: core.delete_namespaced_persistent_volume_claim(n, ns)))
    deleted = []
    from kubernetes.client.exceptions import ApiException

    for kind, lister, deleter in kinds:
        try:
            for item in lister(ns, label_selector=sel).items:
                try:
                    deleter(item.metadata.name)
                    deleted.append(f"{kind}/{item.metadata.name}")
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        except Exception as exc:
            raise explain(exc, f"deleting the experiment's {kind} objects") from None
    # wait until the pods are gone, so a new `up` of the same name starts clean
    deadline = time.time() + timeout
    while time.time() < deadline:
        pods = core.list_namespaced_pod(ns, label_selector=sel).items
        jobs = batch.list_namespaced_job(ns, label_selector=sel).items
        if not pods and not jobs:
            break
        watch_once(cluster, "pods", sel, 2)
    return deleted
