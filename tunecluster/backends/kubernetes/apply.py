"""Applying and deleting an experiment's objects: server-side apply under the field manager
`tunecluster`, the oracle token and certificate kept across re-applies (a re-applied Secret must
not lock out running workers), and deletion of everything labelled with the experiment."""

from __future__ import annotations

import base64
import time
from typing import Callable, Optional

from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.backends.kubernetes.pods import watch_once
from tunecluster.backends.kubernetes.render import (
    FIELD_MANAGER,
    Names,
    chief_dns_names,
    render,
    selector,
)
from tunecluster.cluster.run_secrets import make_certificate, new_token
from tunecluster.tuning.spec import Experiment


def apply_objects(cluster: Cluster, objects: list[dict]) -> None:
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            resource = cluster.dynamic.resources.get(api_version=obj["apiVersion"], kind=kind)
            resource.server_side_apply(body=obj, name=name, namespace=obj["metadata"].get("namespace"),
                                       field_manager=FIELD_MANAGER, force_conflicts=True)
        except Exception as exc:
            raise explain(exc, f"applying {kind} {name}") from None


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


def experiment_objects(cluster: Cluster, spec: Experiment, tensorboard: Optional[bool] = None) -> list[dict]:
    token, tls = secret_material(cluster, spec)
    return render(spec, namespace=cluster.namespace, token=token, tls=tls, tensorboard=tensorboard)


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
        ("Secret", core.list_namespaced_secret, lambda n: core.delete_namespaced_secret(n, ns)),
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
