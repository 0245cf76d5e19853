"""The experiment's pods and Jobs as the launcher reads them: watches instead of sleep loops,
the wait for the chief (failing fast on the pod problems of `pod_problems.py`, a claim that is not
bound, a chief that keeps crashing), a Job queued by Kueue, finding a role's newest pod, reading a
file of the shared volume through a running pod (the exec API), and whether a Job ended.

A Forbidden answer is never taken for "not there yet": it becomes an error that names the verb
and the resource the user's Role lacks."""

from __future__ import annotations

import json
import time
from typing import Optional

from tunecluster.backends.kubernetes.client import Cluster, explain, forbidden
from tunecluster.backends.kubernetes.pod_problems import ProblemClock, pod_events
from tunecluster.backends.kubernetes.render import SHARED_MOUNT, Names, selector
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.tuning.spec import Experiment


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
