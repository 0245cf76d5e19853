"""The experiment's pods and Jobs as the launcher reads them: watches instead of sleep loops,
the pod states a user must act on (an image that cannot be pulled, a pod that cannot be
scheduled, a claim that is not bound), finding a role's newest pod, reading a file of the shared
volume through a running pod (the exec API), and whether a Job ended."""

from __future__ import annotations

import json
import time
from typing import Optional

from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.backends.kubernetes.render import SHARED_MOUNT, Names, selector
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.tuning.spec import Experiment

IMAGE_PROBLEMS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


def watch_once(cluster: Cluster, what: str, sel: str, seconds: int) -> list:
    """Block on a watch of the experiment's pods (or jobs) for up to `seconds`; return the events."""
    from kubernetes import watch

    lister = cluster.core.list_namespaced_pod if what == "pods" else cluster.batch.list_namespaced_job
    events = []
    stream = watch.Watch()
    try:
        for event in stream.stream(lister, cluster.namespace, label_selector=sel, timeout_seconds=seconds,
                                   _request_timeout=seconds + 5):
            events.append(event)
            if len(events) > 50:
                break
    except Exception:
        pass
    finally:
        stream.stop()
    return events


def pod_problem(pod) -> Optional[str]:
    """A pod state a user must act on (image, scheduling, configuration), or None."""
    name = pod.metadata.name
    for status in (pod.status.container_statuses or []) + (pod.status.init_container_statuses or []):
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason in IMAGE_PROBLEMS:
            return (f"pod {name}: the image {status.image} cannot be pulled ({waiting.reason}: "
                    f"{(waiting.message or '').strip()[:300]}); build and push it, or set cluster.kubernetes.image "
                    "(and image_pull_policy)")
        if waiting and waiting.reason == "CreateContainerConfigError":
            return f"pod {name}: {waiting.message}"
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
            return (f"pod {name} cannot be scheduled: {condition.message} (no node offers what the pod asks "
                    "for: GPUs, CPU/memory, node_selector, tolerations, or an unbound volume claim)")
    return None


SCHEDULING_GRACE = 90.0  # s: a volume being provisioned, a node being added; then it is a real problem


class ProblemClock:
    """Reports a pod problem at once, except scheduling problems, which often clear by themselves
    (a claim being bound, an autoscaler adding a node): those only after they last `grace` s."""

    def __init__(self, grace: float = SCHEDULING_GRACE):
        self.grace = grace
        self.first_seen: dict[str, float] = {}

    def check(self, pod) -> Optional[str]:
        problem = pod_problem(pod)
        key = pod.metadata.name
        if problem is None:
            self.first_seen.pop(key, None)
            return None
        if "cannot be scheduled" not in problem:
            return problem
        first = self.first_seen.setdefault(key, time.time())
        return problem if time.time() - first >= self.grace else None


def role_pods(cluster: Cluster, experiment: str, role: Optional[str] = None) -> list:
    try:
        pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=selector(experiment, role)).items
    except Exception as exc:
        raise explain(exc, "listing the experiment's pods") from None
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp)


def pod_role_name(pod) -> str:
    role = (pod.metadata.labels or {}).get("tunecluster.io/role", "?")
    index = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-completion-index") or \
        (pod.metadata.annotations or {}).get("batch.kubernetes.io/job-completion-index")
    return f"worker-{index}" if role == "worker" and index is not None else role


def find_pod(cluster: Cluster, experiment: str, role_name: str):
    """The newest pod of `chief` or `worker-<i>`."""
    role = "chief" if role_name == "chief" else "worker" if role_name.startswith("worker-") else None
    if role is None:
        raise UsageError(f"role {role_name!r}: use chief or worker-<i> (e.g. worker-0)")
    pods = [p for p in role_pods(cluster, experiment, role) if pod_role_name(p) == role_name]
    if not pods:
        raise UsageError(f"no pod for {role_name} of {experiment!r} in namespace {cluster.namespace}")
    return pods[-1]


def exec_read(cluster: Cluster, pod_name: str, command: list[str], timeout: float = 30) -> str:
    from kubernetes.stream import stream

    return stream(cluster.core.connect_get_namespaced_pod_exec, pod_name, cluster.namespace,
                  command=command, stderr=False, stdin=False, stdout=True, tty=False,
                  _request_timeout=timeout)


def read_shared_json(cluster: Cluster, pod_name: str, name: str) -> Optional[dict]:
    try:
        text = exec_read(cluster, pod_name, ["cat", f"{SHARED_MOUNT}/{name}"])
        return json.loads(text) if text and text.strip().startswith("{") else None
    except Exception:
        return None


def wait_for_chief(cluster: Cluster, spec: Experiment, timeout: float = 300) -> str:
    """Watch the chief's pod until it is ready; fail fast on image/scheduling problems."""
    deadline = time.time() + timeout
    sel = selector(spec.name, "chief")
    clock = ProblemClock()
    while time.time() < deadline:
        for pod in role_pods(cluster, spec.name, "chief"):
            problem = clock.check(pod)
            if problem:
                raise RunFailure(pending_claim(cluster, spec) or problem)
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            if ready:
                return pod.metadata.name
        watch_once(cluster, "pods", sel, 5)
    claim = pending_claim(cluster, spec)
    if claim:
        raise RunFailure(claim)
    raise RunFailure(f"the chief pod of {spec.name!r} was not ready within {timeout:.0f} s; "
                     f"see `tunecluster status` and `tunecluster logs chief`")


def pending_claim(cluster: Cluster, spec: Experiment) -> Optional[str]:
    k8s = spec.cluster.kubernetes
    name = k8s.existing_claim or Names(spec.name).claim
    try:
        claim = cluster.core.read_namespaced_persistent_volume_claim(name, cluster.namespace)
    except Exception:
        return None
    if claim.status.phase == "Bound":
        return None
    return (f"the volume claim {name} is still {claim.status.phase}: no volume was provisioned; set "
            f"cluster.kubernetes.storage_class to a class that provides {k8s.access_mode} volumes "
            "(or ReadWriteOnce on a single node), or give cluster.kubernetes.existing_claim")


def job_state(cluster: Cluster, name: str) -> Optional[str]:
    """'Complete', 'Failed' or None (running) for a Job."""
    try:
        job = cluster.batch.read_namespaced_job_status(name, cluster.namespace)
    except Exception:
        return None
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition.type
    return None


def logs(cluster: Cluster, experiment: str, role_name: str, *, tail: Optional[int], follow: bool, out) -> None:
    pod = find_pod(cluster, experiment, role_name)
    try:
        if follow:
            response = cluster.core.read_namespaced_pod_log(pod.metadata.name, cluster.namespace, follow=True,
                                                            tail_lines=tail, _preload_content=False)
            for chunk in response.stream():
                out.write(chunk.decode(errors="replace"))
                out.flush()
        else:
            out.write(cluster.core.read_namespaced_pod_log(pod.metadata.name, cluster.namespace, tail_lines=tail))
    except Exception as exc:
        raise explain(exc, f"reading the log of {role_name}") from None
