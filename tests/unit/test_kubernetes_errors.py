"""The Kubernetes launcher's decisions, on the client's own model objects (no cluster): which pod
states are problems a user must act on, how API errors become one line, and the kubeconfig
errors. The same paths run against a real API server in the e2e_kubernetes suite."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.backends.kubernetes.client import connect, explain
from tunecluster.backends.kubernetes import pod_problems
from tunecluster.backends.kubernetes.pod_problems import pod_problem
from tunecluster.backends.kubernetes.pods import crash_looping, pod_role_name, pod_whereabouts


def _pod(waiting=None, conditions=None, labels=None, name="exp-workers-1-abc"):
    statuses = []
    if waiting:
        statuses.append(client.V1ContainerStatus(
            name="worker", image="registry.example/tunecluster:9", image_id="", ready=False, restart_count=0,
            state=client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason=waiting[0], message=waiting[1]))))
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
                        status=client.V1PodStatus(phase="Pending", container_statuses=statuses,
                                                  conditions=conditions or []))


def test_image_pull_failures_say_what_to_do():
    problem = pod_problem(_pod(waiting=("ImagePullBackOff", "Back-off pulling image")))
    assert "registry.example/tunecluster:9 cannot be pulled (ImagePullBackOff" in problem
    assert "cluster.kubernetes.image" in problem


def test_a_failed_pull_is_reported_once_it_outlasts_the_kubelets_retries(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(pod_problems.time, "time", lambda: now[0])
    clock = pod_problems.ProblemClock(grace=90)
    assert clock.pull_grace == pod_problems.PULL_GRACE == 30.0
    assert clock.check(_pod(waiting=("ErrImagePull", "failed to resolve reference: 503"))) is None
    now[0] += 20
    # the kubelet alternates ErrImagePull and ImagePullBackOff while it retries: one clock for both
    assert clock.check(_pod(waiting=("ImagePullBackOff", "Back-off pulling image"))) is None
    now[0] += 11
    line = clock.check(_pod(waiting=("ErrImagePull", "failed to resolve reference: not found")))
    assert "cannot be pulled (ErrImagePull: failed to resolve reference: not found)" in line
    # a pull that worked (the pod went on) starts the clock again for a later failure
    assert clock.check(_pod()) is None
    assert clock.check(_pod(waiting=("ErrImagePull", "503"))) is None


def test_an_image_that_can_never_be_pulled_is_reported_at_once():
    clock = pod_problems.ProblemClock(grace=90)
    missing = clock.check(_pod(waiting=("ErrImagePull", 'rpc error: code = NotFound desc = failed to pull and unpack '
                                                       'image "registry.example/tunecluster:9": not found')))
    assert "cannot be pulled (ErrImagePull: rpc error: code = NotFound" in missing
    line = clock.check(_pod(waiting=("InvalidImageName", 'invalid reference format: "Bad:Name"')))
    assert "cannot be pulled (InvalidImageName" in line


def test_unschedulable_pods_are_explained():
    condition = client.V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable",
                                      message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    problem = pod_problem(_pod(conditions=[condition]))
    assert "cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in problem
    assert pod_problem(_pod()) is None


def test_a_chief_that_is_not_ready_in_time_is_described():
    """What `up` says when the chief pod is not ready within the timeout: the phase, each
    container's state with its restarts and last exit, and the newest event."""
    crashing = client.V1ContainerStatus(
        name="chief", image="x", image_id="", ready=False, restart_count=3,
        state=client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason="CrashLoopBackOff")),
        last_state=client.V1ContainerState(terminated=client.V1ContainerStateTerminated(
            exit_code=1, message="Traceback (most recent call last):\n  ...\nValueError: no data at /data/x.csv\n")))
    pod = _pod(name="exp-chief-abc")
    pod.status.phase, pod.status.container_statuses = "Running", [crashing]
    event = client.CoreV1Event(involved_object=client.V1ObjectReference(), metadata=client.V1ObjectMeta(),
                               reason="BackOff", message="Back-off restarting failed container chief")
    said = pod_whereabouts(pod, [event])
    assert said == ("pod exp-chief-abc Running; container chief waiting (CrashLoopBackOff), 3 restarts, "
                    "last exit 1: ValueError: no data at /data/x.csv; "
                    "last event BackOff: Back-off restarting failed container chief")
    assert crash_looping(pod)
    crashing.restart_count = 1  # one crash may be a chief restarted on purpose
    assert not crash_looping(pod)
    running = client.V1ContainerStatus(name="chief", image="x", image_id="", ready=False, restart_count=0,
                                       state=client.V1ContainerState(running=client.V1ContainerStateRunning()))
    pod.status.container_statuses = [running]
    assert pod_whereabouts(pod, []) == "pod exp-chief-abc Running; container chief running, not ready"
    assert not crash_looping(pod)


def test_worker_pods_are_named_by_their_index():
    pod = _pod(labels={"tunecluster.io/role": "worker", "batch.kubernetes.io/job-completion-index": "3"})
    assert pod_role_name(pod) == "worker-3"


def _api_error(status, message, reason="Forbidden"):
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"message": message})
    return exc


def test_forbidden_names_the_missing_verb_and_points_at_the_role():
    error = explain(_api_error(403, 'jobs.batch is forbidden: User "alice" cannot create resource "jobs" '
                                    'in API group "batch" in the namespace "ml"'), "applying Job exp-chief")
    assert isinstance(error, UsageError)
    assert "you lack the verb 'create' on 'jobs' (API group 'batch')" in str(error)
    assert "tunecluster render --rbac" in str(error)


def test_quota_exceeded_is_a_runtime_failure_with_advice():
    error = explain(_api_error(403, 'pods "exp-workers-0" is forbidden: exceeded quota: gpu-quota, requested: '
                                    'requests.nvidia.com/gpu=1, used: 4, limited: 4'), "creating pods")
    assert isinstance(error, RunFailure) and "quota exceeded" in str(error) and "lower cluster.workers" in str(error)


def test_unreachable_api_server():
    error = explain(ConnectionRefusedError("[Errno 111] Connection refused"), "applying ConfigMap exp-config")
    assert isinstance(error, RunFailure) and "cannot reach the Kubernetes API server" in str(error)


def test_missing_kubeconfig_and_unknown_context(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UsageError, match="no kubeconfig: .* does not exist"):
        connect(kubeconfig=str(tmp_path / "missing"))
    config = tmp_path / "config"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team"}}]}))
    assert connect(kubeconfig=str(config)).namespace == "team"
    assert connect(kubeconfig=str(config), namespace="other").namespace == "other"
    with pytest.raises(UsageError, match="no usable Kubernetes configuration"):
        connect(kubeconfig=str(config), context="nope")
