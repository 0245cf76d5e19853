"""The pod states a user must act on, read from a pod and its events: an image that cannot be
pulled, a pod that cannot be scheduled, a volume that cannot be attached or mounted, a bad
configuration; and `ProblemClock`, which reports those that often clear by themselves (a
scheduling wait, a mount the kubelet retries, a pull from a registry's hiccup) only once they last,
and says when the cluster autoscaler is adding a node for a pod."""

from __future__ import annotations

import time
from typing import Optional

from tunecluster.backends.kubernetes.client import Cluster, forbidden
from tunecluster.tuning.spec import Experiment

IMAGE_PROBLEMS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


def pod_problem(pod, events: Optional[list] = None) -> Optional[str]:
    """A pod state a user must act on (image, scheduling, configuration, volume), or None.
    `events`: the pod's events (volume attach/mount failures show only there)."""
    name = pod.metadata.name
    for status in (pod.status.container_statuses or []) + (pod.status.init_container_statuses or []):
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason in IMAGE_PROBLEMS:
            return (f"pod {name}: the image {status.image} cannot be pulled ({waiting.reason}: "
                    f"{(waiting.message or '').strip()[:300]}); build and push it, or set cluster.kubernetes.image "
                    "(and image_pull_policy); a private registry needs cluster.kubernetes.image_pull_secrets")
        if waiting and waiting.reason == "CreateContainerConfigError":
            return f"pod {name}: {waiting.message}"
    for event in unsettled_volume_events(events or []):
        problem = volume_problem(name, event)
        if problem:
            return problem
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
            return (f"pod {name} cannot be scheduled: {condition.message} (no node offers what the pod asks "
                    "for: GPUs, CPU/memory, node_selector, tolerations, or an unbound volume claim)")
    return None


OUR_OBJECTS_NOT_YET = ('configmap "', 'secret "')  # FailedMount while `up` is still applying them
VOLUME_EVENTS = ("FailedAttachVolume", "FailedMount")
PAST_THE_VOLUMES = ("Pulling", "Pulled", "Created", "Started", "SuccessfulAttachVolume")  # the kubelet went on


def unsettled_volume_events(events: list) -> list:
    """The volume failures not followed by an event that shows the kubelet got past the volumes
    (events newest last): a mount that failed once and then worked is not a problem."""
    unsettled = []
    for event in events:
        if event.reason in VOLUME_EVENTS:
            unsettled.append(event)
        elif event.reason in PAST_THE_VOLUMES:
            unsettled = []
    return unsettled


def volume_problem(pod_name: str, event) -> Optional[str]:
    """One line with what to do for a FailedAttachVolume / Multi-Attach / FailedMount event."""
    reason, message = getattr(event, "reason", None), (getattr(event, "message", None) or "").strip()
    short = message[:300]
    if reason == "FailedAttachVolume" and "Multi-Attach" in message:
        return (f"pod {pod_name}: the shared volume is attached to another node and cannot attach to this one "
                f"({short}); it is ReadWriteOnce: set cluster.kubernetes.access_mode: ReadWriteOnce (every pod on "
                "one node) or auto, or use a storage_class that provides ReadWriteMany")
    if reason == "FailedAttachVolume":
        return (f"pod {pod_name}: the volume cannot be attached to its node ({short}); check the StorageClass's "
                "driver (kubectl describe pvc) or pick another cluster.kubernetes.storage_class")
    if reason == "FailedMount" and not any(key in message and "not found" in message for key in OUR_OBJECTS_NOT_YET):
        return (f"pod {pod_name}: a volume cannot be mounted ({short}); check the claim and the StorageClass "
                "(kubectl describe pvc), the volumes in pod_overrides, and that the node can reach the storage")
    return None


def pod_events(cluster: Cluster, pod_name: str) -> list:
    """The events of one pod, newest last."""
    try:
        events = cluster.core.list_namespaced_event(
            cluster.namespace, field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod_name}").items
    except Exception as exc:
        denied = forbidden(exc, "list", "events", cluster.namespace)
        if denied:
            raise denied from None
        return []
    return sorted(events, key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp or ""))


SCHEDULING_GRACE = 90.0  # s: a volume being provisioned, a node being added; then it is a real problem
MOUNT_GRACE = 45.0  # s: the kubelet retries a failed mount (a node authorizer that has not yet seen the pod,
#                     a slow network filesystem); one that still fails after this is a real problem
PULL_GRACE = 30.0  # s: the kubelet retries a failed pull (10 s, 20 s, ... apart): a registry's hiccup
#                    clears within it, an image that is not there is still missing after it
LASTING = {"cannot be scheduled": "grace", "cannot be mounted": "mount_grace",
           "cannot be attached to its node": "mount_grace"}
PULL_RETRIED = ("ErrImagePull", "ImagePullBackOff")  # the kubelet alternates them while it retries
PULL_NOT_FOUND = "code = NotFound"  # the registry answered that it has no such image: no retry helps
AUTOSCALER_WAIT = "waiting for the cluster autoscaler to add a node"


def lasting_kind(problem: Optional[str]) -> Optional[str]:
    """The kind of a problem that may clear by itself (reported only once it lasts), else None."""
    if problem is None:
        return None
    if any(f"cannot be pulled ({reason}:" in problem for reason in PULL_RETRIED) and PULL_NOT_FOUND not in problem:
        return "cannot be pulled"  # one kind for both reasons: the clock runs on across the retries
    return next((words for words in LASTING if words in problem), None)


class ProblemClock:
    """Reports a pod problem at once, except those that often clear by themselves: scheduling (a
    claim being bound, an autoscaler adding a node) only after it lasts `grace` s, and not while
    the cluster autoscaler says it is adding a node for the pod (TriggeredScaleUp); when it says no
    node group fits (NotTriggerScaleUp), at once; a failed mount or attach (the kubelet retries)
    after `mount_grace` s; a failed image pull (ErrImagePull / ImagePullBackOff: the kubelet
    retries) after `pull_grace` s, while an image the registry says it does not have (NotFound) or
    one that can never be pulled (InvalidImageName, ErrImageNeverPull) at once. With `cluster`, the pod's events are read for volume problems
    (FailedAttachVolume, Multi-Attach at once, FailedMount) and the autoscaler."""

    def __init__(self, grace: float = SCHEDULING_GRACE, cluster: Optional[Cluster] = None,
                 mount_grace: Optional[float] = None, pull_grace: Optional[float] = None):
        self.grace = grace
        self.mount_grace = min(grace, MOUNT_GRACE) if mount_grace is None else mount_grace
        self.pull_grace = min(grace, PULL_GRACE) if pull_grace is None else pull_grace
        self.cluster = cluster
        self.first_seen: dict[tuple[str, str], float] = {}  # (pod, kind of lasting problem)
        self.notes: list[str] = []  # what the caller should say once (the autoscaler is working)
        self._said: set[str] = set()

    @classmethod
    def for_spec(cls, cluster: Optional[Cluster], spec: Experiment) -> "ProblemClock":
        return cls(spec.cluster.kubernetes.unschedulable_grace_seconds, cluster)

    def _note(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self.notes.append(text)

    def check(self, pod) -> Optional[str]:
        pending = (pod.status.phase or "Pending") == "Pending"
        events = pod_events(self.cluster, pod.metadata.name) if self.cluster is not None and pending else []
        problem = pod_problem(pod, events)
        name = pod.metadata.name
        kind = lasting_kind(problem)
        for other in [k for k in self.first_seen if k[0] == name and k[1] != kind]:
            del self.first_seen[other]  # a lasting problem that cleared (or became another) starts again
        if problem is None or kind is None:
            return problem
        key = (name, kind)
        if kind != "cannot be scheduled":
            first = self.first_seen.setdefault(key, time.time())
            grace = self.pull_grace if kind == "cannot be pulled" else getattr(self, LASTING[kind])
            return problem if time.time() - first >= grace else None
        scaling = [e for e in events if e.reason in ("TriggeredScaleUp", "NotTriggerScaleUp")]
        if scaling and scaling[-1].reason == "TriggeredScaleUp":
            self._note(f"pod {name}: {AUTOSCALER_WAIT}")
            self.first_seen[key] = time.time()  # the grace starts again
            return None
        if scaling and scaling[-1].reason == "NotTriggerScaleUp" and \
                not any(e.reason == "TriggeredScaleUp" for e in scaling):
            return (f"{problem}; the cluster autoscaler cannot add a node that fits "
                    f"({(scaling[-1].message or '').strip()[:200]})")
        first = self.first_seen.setdefault(key, time.time())
        return problem if time.time() - first >= self.grace else None
