"""The short-lived pod that moves files on and off an experiment's volume (`upload`, `pull`, the
pre-start data check): the experiment's image (it only needs `python3`), the volume at the mount
path the workers see, read-only unless it writes, 64 MiB of memory (everything is streamed), the
same hardening as every other pod, deleted when done (`down` removes a leftover one: it carries
the experiment's label)."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from tunecluster.backends.kubernetes.apply import apply_objects
from tunecluster.backends.kubernetes.client import Cluster
from tunecluster.backends.kubernetes.pod_problems import ProblemClock
from tunecluster.backends.kubernetes.pods import watch_once
from tunecluster.backends.kubernetes.render import Names, _meta, _pod_spec, selector
from tunecluster.core.errors import RunFailure
from tunecluster.tuning.spec import Experiment, RoleOverrides

ROLE = "transfer"
MEMORY_LIMIT = "64Mi"
LIFETIME = 4 * 3600  # s: the pod's own deadline, should this client die without deleting it


def pod_command(*args: str) -> list[str]:
    """`python3 -c <pod_side.py> ARGS...`: the helper pod's side of a transfer."""
    from tunecluster.backends.kubernetes import pod_side

    return ["python3", "-c", Path(pod_side.__file__).read_text(), *args]


def helper_pod(spec: Experiment, namespace: str, *, writable: bool = False, volume: bool = True,
               node: Optional[str] = None) -> dict:
    """The pod's object (a random suffix: several transfers may run at once)."""
    names = Names(spec.name)
    name = f"{spec.name}-transfer-{os.urandom(3).hex()}"  # not a secret: a unique name
    container = {"name": "transfer", "command": ["sleep", str(LIFETIME)],
                 "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": MEMORY_LIMIT}}}
    chief = spec.cluster.kubernetes.pod_overrides.chief  # placed like the chief: it needs no GPU
    placement = RoleOverrides(node_selector=chief.node_selector, tolerations=chief.tolerations)
    pod = _pod_spec(spec, names, container, "Never", shared_read_only=not writable, secret=False, config=False,
                    overrides=placement)
    if not volume:  # a check of a path in the image before the claim exists
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "shared"]
        pod["containers"][0]["volumeMounts"] = [m for m in pod["containers"][0]["volumeMounts"]
                                                if m["name"] != "shared"]
    if node:  # a ReadWriteOnce volume is attached to one node: go where it is
        pod.setdefault("affinity", {})["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, namespace, spec.name, ROLE),
            "spec": {**pod, "activeDeadlineSeconds": LIFETIME}}


def volume_node(cluster: Cluster, spec: Experiment) -> Optional[str]:
    """The node of a running pod of the experiment when its claim is ReadWriteOnce (else None)."""
    from kubernetes.client.exceptions import ApiException

    claim = spec.cluster.kubernetes.existing_claim or Names(spec.name).claim
    try:
        modes = cluster.core.read_namespaced_persistent_volume_claim(claim, cluster.namespace).spec.access_modes or []
    except ApiException:
        return None
    if "ReadWriteOnce" not in modes:
        return None
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=selector(spec.name)).items
    running = [p for p in pods if p.status.phase == "Running" and p.spec.node_name]
    return running[0].spec.node_name if running else None


@contextmanager
def running_helper(cluster: Cluster, spec: Experiment, *, writable: bool = False, volume: bool = True,
                   timeout: float = 600) -> Iterator[str]:
    """Start the helper pod, wait until it runs, yield its name; delete it afterwards. `timeout`
    allows for a first pull of the experiment's image onto the node (which the chief and workers
    then find there); an image that cannot be pulled is reported at once."""
    pod = helper_pod(spec, cluster.namespace, writable=writable, volume=volume,
                     node=volume_node(cluster, spec) if volume else None)
    name = pod["metadata"]["name"]
    apply_objects(cluster, [pod])
    try:
        deadline = time.time() + timeout
        clock = ProblemClock(grace=60)  # a claim being bound or provisioned first: not yet a problem
        while True:
            current = cluster.core.read_namespaced_pod(name, cluster.namespace)
            problem = clock.check(current)
            if problem:
                raise RunFailure(problem)
            if current.status.phase == "Running":
                break
            if current.status.phase in ("Failed", "Succeeded"):
                raise RunFailure(f"the transfer pod {name} ended before it was used ({current.status.phase}: "
                                 f"{current.status.message or current.status.reason or 'no reason given'})")
            if time.time() > deadline:
                raise RunFailure(f"the transfer pod {name} did not start within {timeout:.0f} s; see "
                                 f"`kubectl -n {cluster.namespace} describe pod {name}`")
            watch_once(cluster, "pods", f"{selector(spec.name, ROLE)}", 5)
        yield name
    finally:
        try:
            cluster.core.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)
        except Exception:
            pass
