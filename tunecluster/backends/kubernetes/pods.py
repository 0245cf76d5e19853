"""The experiment's pods and Jobs as the launcher reads them: watches instead of sleep loops,
the pod states a user must act on (an image that cannot be pulled, a pod that cannot be
scheduled, a claim that is not bound, a volume that cannot be attached or mounted), the cluster
autoscaler adding a node, a Job queued by Kueue, finding a role's newest pod, reading a file of
the shared volume through a running pod (the exec API), and whether a Job ended.

A Forbidden answer is never taken for "not there yet": it becomes an error that names the verb
and the resource the user's Role lacks."""

from __future__ import annotations

import json
import time
from typing import Optional

from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.backends.kubernetes.render import SHARED_MOUNT, Names, selector
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.tuning.spec import Experiment

IMAGE_PROBLEMS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


def forbidden(exc: Exception, verb: str, resource: str, namespace: str) -> Optional[UsageError]:
    """The error for a 401/403 answer to `verb` on `resource` (None for any other exception)."""
    status = getattr(exc, "status", None)
    if status == 0 and "403" in str(getattr(exc, "reason", "")):
        status = 403  # a websocket (exec, port-forward) refused at the handshake
    if status == 403:
        return UsageError(f"the Kubernetes user may not {verb} {resource} in namespace {namespace}: add it to the "
                          "Role (`tunecluster render --rbac`)")
    if status == 401:
        return UsageError("the API server rejected the kubeconfig's credentials; log in again or pick another "
                          "--context")
    return None


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
    except Exception as exc:
        denied = forbidden(exc, "watch", what, cluster.namespace)
        if denied:
            raise denied from None
    finally:
        stream.stop()
    return events


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
LASTING = {"cannot be scheduled": "grace", "cannot be mounted": "mount_grace",
           "cannot be attached to its node": "mount_grace"}
AUTOSCALER_WAIT = "waiting for the cluster autoscaler to add a node"


class ProblemClock:
    """Reports a pod problem at once, except those that often clear by themselves: scheduling (a
    claim being bound, an autoscaler adding a node) only after it lasts `grace` s, and not while
    the cluster autoscaler says it is adding a node for the pod (TriggeredScaleUp); when it says no
    node group fits (NotTriggerScaleUp), at once; a failed mount or attach (the kubelet retries)
    after `mount_grace` s. With `cluster`, the pod's events are read for volume problems
    (FailedAttachVolume, Multi-Attach at once, FailedMount) and the autoscaler."""

    def __init__(self, grace: float = SCHEDULING_GRACE, cluster: Optional[Cluster] = None,
                 mount_grace: Optional[float] = None):
        self.grace = grace
        self.mount_grace = min(grace, MOUNT_GRACE) if mount_grace is None else mount_grace
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
        kind = next((words for words in LASTING if problem and words in problem), None)
        for other in [k for k in self.first_seen if k[0] == name and k[1] != kind]:
            del self.first_seen[other]  # a lasting problem that cleared (or became another) starts again
        if problem is None or kind is None:
            return problem
        key = (name, kind)
        if kind != "cannot be scheduled":
            first = self.first_seen.setdefault(key, time.time())
            return problem if time.time() - first >= getattr(self, LASTING[kind]) else None
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
    except Exception as exc:
        denied = forbidden(exc, "create", "pods/exec", cluster.namespace)
        if denied:
            raise denied from None
        return None


def read_or_none(cluster: Cluster, verb: str, resource: str, call, *args):
    """`call(*args)`, None when it fails; a Forbidden is the error naming `verb` and `resource`."""
    try:
        return call(*args)
    except Exception as exc:
        denied = forbidden(exc, verb, resource, cluster.namespace)
        if denied:
            raise denied from None
        return None


def job_queued(cluster: Cluster, name: str) -> Optional[str]:
    """A line when the Job waits in a Kueue queue (suspended, not yet admitted), else None."""
    job = read_or_none(cluster, "get", "jobs", cluster.batch.read_namespaced_job, name, cluster.namespace)
    if job is None:
        return None
    if not (job.spec and job.spec.suspend):
        return None
    queue = (job.metadata.labels or {}).get("kueue.x-k8s.io/queue-name")
    where = f"Kueue queue {queue}" if queue else "suspended"
    return f"queued by Kueue ({where}): the Job {name} starts when Kueue admits it (`kubectl get workloads`)"


def wait_for_chief(cluster: Cluster, spec: Experiment, timeout: float = 300, say=None) -> str:
    """Watch the chief's pod until it is ready; fail fast on image/volume/scheduling problems.
    While Kueue holds the chief Job (suspended) or the autoscaler adds a node, keep waiting and
    say so (the timeout starts when the Job is admitted)."""
    deadline = time.time() + timeout
    sel = selector(spec.name, "chief")
    clock = ProblemClock.for_spec(cluster, spec)
    said_queued = False
    while time.time() < deadline:
        queued = job_queued(cluster, Names(spec.name).chief) if spec.cluster.kubernetes.queue_name else None
        if queued:
            if say and not said_queued:
                say(queued)
            said_queued = True
            deadline = time.time() + timeout
            watch_once(cluster, "jobs", sel, 5)
            continue
        for pod in role_pods(cluster, spec.name, "chief"):
            problem = clock.check(pod)
            if problem:
                raise RunFailure(pending_claim(cluster, spec) or problem)
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            if ready or pod.status.phase == "Succeeded":  # a short search can end before a probe saw it ready
                return pod.metadata.name
            if crash_looping(pod):
                raise RunFailure(f"the chief of {spec.name!r} keeps crashing before it is ready "
                                 f"({pod_whereabouts(pod, [])}); see `tunecluster logs chief`")
        if clock.notes:
            deadline = max(deadline, time.time() + spec.cluster.kubernetes.unschedulable_grace_seconds)
            for note in clock.notes:
                if say:
                    say(note)
            clock.notes.clear()
        watch_once(cluster, "pods", sel, 5)
    claim = pending_claim(cluster, spec)
    if claim:
        raise RunFailure(claim)
    pods = role_pods(cluster, spec.name, "chief")
    where = pod_whereabouts(pods[-1], pod_events(cluster, pods[-1].metadata.name)) if pods else \
        f"no chief pod was created (`kubectl describe job {Names(spec.name).chief} -n {cluster.namespace}`)"
    raise RunFailure(f"the chief pod of {spec.name!r} was not ready within {timeout:.0f} s ({where}); "
                     f"see `tunecluster status` and `tunecluster logs chief`")


def crash_looping(pod) -> bool:
    """Whether a container of the pod is in CrashLoopBackOff: it failed more than once and the
    kubelet waits longer each time (one crash may be a chief restarted on purpose); waiting out a
    timeout helps nobody."""
    return any(s.state and s.state.waiting and s.state.waiting.reason == "CrashLoopBackOff" and s.restart_count >= 2
               for s in pod.status.container_statuses or [])


def pod_whereabouts(pod, events: list) -> str:
    """Where a pod stands, in one clause: its phase, each container's state (waiting reason,
    restarts, last exit), and its newest event: what a user needs when a wait times out."""
    parts = [f"pod {pod.metadata.name} {pod.status.phase or 'Pending'}"]
    for status in pod.status.container_statuses or []:
        state = status.state
        if state and state.waiting:
            said = f"container {status.name} waiting ({state.waiting.reason})"
        elif state and state.running:
            said = f"container {status.name} running, {'ready' if status.ready else 'not ready'}"
        elif state and state.terminated:
            said = f"container {status.name} exited {state.terminated.exit_code} ({state.terminated.reason})"
        else:
            said = f"container {status.name} not started"
        if status.restart_count:
            said += f", {status.restart_count} restarts"
        last = status.last_state.terminated if status.last_state else None
        if last is not None:
            tail = [line for line in (last.message or "").strip().splitlines() if line.strip()][-1:]
            said += f", last exit {last.exit_code}" + (f": {tail[0].strip()[:200]}" if tail else "")
        parts.append(said)
    if events:
        last = events[-1]
        parts.append(f"last event {last.reason}: {(last.message or '').strip()[:200]}")
    return "; ".join(parts)


def pending_claim(cluster: Cluster, spec: Experiment) -> Optional[str]:
    k8s = spec.cluster.kubernetes
    name = k8s.existing_claim or Names(spec.name).claim
    claim = read_or_none(cluster, "get", "persistentvolumeclaims",
                         cluster.core.read_namespaced_persistent_volume_claim, name, cluster.namespace)
    if claim is None:
        return None
    if claim.status.phase == "Bound":
        return None
    modes = ",".join(claim.spec.access_modes or []) or k8s.access_mode
    return (f"the volume claim {name} is still {claim.status.phase}: no volume was provisioned; set "
            f"cluster.kubernetes.storage_class to a class that provides {modes} volumes "
            "(or access_mode: ReadWriteOnce, every pod on one node), or give cluster.kubernetes.existing_claim")


def job_state(cluster: Cluster, name: str) -> Optional[str]:
    """'Complete', 'Failed', 'Deleted' (gone: `down`, its TTL) or None (running, queued, or the API
    server briefly unreachable) for a Job. A Forbidden is an error, never "still running"."""
    from kubernetes.client.exceptions import ApiException

    try:
        job = cluster.batch.read_namespaced_job_status(name, cluster.namespace)
    except ApiException as exc:
        denied = forbidden(exc, "get", "jobs/status", cluster.namespace)
        if denied:
            raise denied from None
        if exc.status == 404:
            return "Deleted"
        if exc.status and exc.status < 500:
            raise explain(exc, f"reading the state of the Job {name}") from None
        return None
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
