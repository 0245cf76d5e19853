"""The shared volume's access mode decided from the StorageClass or the existing claim (ReadWriteOnce
pins every pod to one node and says so), volume events turned into one line with what to do, the
cluster autoscaler's events extending the unschedulable grace, and a Kueue-suspended Job reported
as queued. (The e2e bed runs ReadWriteOnce and ReadWriteMany claims for real.)"""

from __future__ import annotations

import time
from types import SimpleNamespace as NS

import pytest

from tunecluster.backends.kubernetes import pod_problems, pods
from tunecluster.backends.kubernetes.storage import decide_for_claim, decide_for_class, default_class
from tunecluster.core.errors import UsageError


def _class(name, provisioner, default=False):
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return NS(metadata=NS(name=name, annotations=annotations), provisioner=provisioner)


def _claim(name, modes):
    return NS(metadata=NS(name=name), spec=NS(access_modes=modes), status=NS(access_modes=modes))


@pytest.mark.parametrize("provisioner, requested, mode", [
    ("ebs.csi.aws.com", "auto", "ReadWriteOnce"),
    ("rancher.io/local-path", "auto", "ReadWriteOnce"),
    ("some.vendor/unknown", "auto", "ReadWriteOnce"),  # not known to share: the safe choice
    ("nfs.csi.k8s.io", "auto", "ReadWriteMany"),
    ("efs.csi.aws.com", "auto", "ReadWriteMany"),
    ("nfs.csi.k8s.io", "ReadWriteOnce", "ReadWriteOnce"),
    ("some.vendor/unknown", "ReadWriteMany", "ReadWriteMany"),
])
def test_the_storage_class_decides_the_access_mode(provisioner, requested, mode):
    decision = decide_for_class(_class("fast", provisioner), requested)
    assert decision.access_mode == mode
    if mode == "ReadWriteOnce":
        assert "every pod of the experiment runs on the node of the chief" in decision.message
        assert provisioner in decision.message and "ReadWriteMany" in decision.message
    else:
        assert decision.message is None


def test_read_write_many_on_a_single_node_class_is_refused_before_anything_is_made():
    with pytest.raises(UsageError, match="gives single-node .* would stay Pending; set access_mode: auto"):
        decide_for_class(_class("gp3", "ebs.csi.aws.com"), "ReadWriteMany")


def test_an_existing_claim_decides_by_its_own_modes():
    assert decide_for_claim(_claim("team", ["ReadWriteMany"]), "auto").access_mode == "ReadWriteMany"
    once = decide_for_claim(_claim("team", ["ReadWriteOnce"]), "ReadWriteMany")
    assert once.access_mode == "ReadWriteOnce" and "asked ReadWriteMany" in once.message
    with pytest.raises(UsageError, match="ReadWriteOncePod"):
        decide_for_claim(_claim("team", ["ReadWriteOncePod"]), "auto")


def test_the_default_class_is_the_annotated_one():
    classes = [_class("slow", "nfs"), _class("standard", "rancher.io/local-path", default=True)]
    assert default_class(classes).metadata.name == "standard"
    assert default_class([_class("slow", "nfs")]) is None
    chosen = decide_for_class(default_class(classes), "auto")
    assert chosen.source == "StorageClass standard, provisioner rancher.io/local-path"


def _event(reason, message="", count=1):
    return NS(reason=reason, message=message, count=count, last_timestamp=None, event_time=None,
              metadata=NS(creation_timestamp="2026-01-01T00:00:00Z"))


@pytest.mark.parametrize("event, words", [
    (_event("FailedAttachVolume", 'Multi-Attach error for volume "pvc-1" Volume is already used by pod(s) x'),
     ["attached to another node", "access_mode: ReadWriteOnce"]),
    (_event("FailedAttachVolume", "AttachVolume.Attach failed: rpc error"), ["cannot be attached", "storage_class"]),
    (_event("FailedMount", "MountVolume.SetUp failed for volume \"pvc-1\": mount failed: exit status 32"),
     ["cannot be mounted", "kubectl describe pvc"]),
])
def test_volume_events_become_one_line_with_what_to_do(event, words):
    line = pod_problems.volume_problem("exp-workers-0-abc", event)
    assert line.startswith("pod exp-workers-0-abc: ") and "\n" not in line
    for word in words:
        assert word in line


def test_a_mount_waiting_for_our_own_config_map_is_not_a_problem():
    event = _event("FailedMount", 'MountVolume.SetUp failed for volume "config" : configmap "exp-config" not found')
    assert pod_problems.volume_problem("p", event) is None
    assert pod_problems.volume_problem("p", _event("Scheduled", "ok")) is None


def _pending_pod(name="exp-workers-0-abc"):
    condition = NS(type="PodScheduled", status="False", reason="Unschedulable",
                   message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    return NS(metadata=NS(name=name), status=NS(phase="Pending", container_statuses=[], init_container_statuses=[],
                                                 conditions=[condition]))


class _Events:
    """ProblemClock's one API read (the pod's events), answered from a list the test changes."""

    def __init__(self):
        self.events = []
        self.namespace = "ns"
        self.core = NS(list_namespaced_event=lambda ns, field_selector: NS(items=list(self.events)))


def test_the_autoscaler_adding_a_node_extends_the_grace_and_is_said():
    cluster = _Events()
    clock = pod_problems.ProblemClock(grace=0.0, cluster=cluster)
    cluster.events = [_event("TriggeredScaleUp", "pod triggered scale-up: [{gpu-pool 0->1 (max: 4)}]")]
    assert clock.check(_pending_pod()) is None  # past the grace, but a node is coming
    assert clock.notes == ["pod exp-workers-0-abc: waiting for the cluster autoscaler to add a node"]
    assert clock.check(_pending_pod()) is None and len(clock.notes) == 1  # said once
    cluster.events = [_event("NotTriggerScaleUp", "pod didn't trigger scale-up: 2 max node group size reached")]
    line = clock.check(_pending_pod())
    assert "cannot be scheduled" in line and "autoscaler cannot add a node that fits" in line
    assert "max node group size" in line


def test_the_unschedulable_grace_comes_from_the_spec():
    from tunecluster.tuning.spec import validate_spec

    spec = validate_spec({"cluster": {"kubernetes": {"unschedulable_grace_seconds": 600}}}, "t")
    clock = pod_problems.ProblemClock.for_spec(None, spec)
    assert clock.grace == 600
    assert clock.check(_pending_pod()) is None  # within the grace
    clock.first_seen[("exp-workers-0-abc", "cannot be scheduled")] = time.time() - 601
    assert "cannot be scheduled" in clock.check(_pending_pod())


def test_a_job_suspended_by_kueue_is_queued_not_failed():
    job = NS(spec=NS(suspend=True), metadata=NS(labels={"kueue.x-k8s.io/queue-name": "team-a"}))
    cluster = NS(namespace="ns", batch=NS(read_namespaced_job=lambda name, ns: job))
    line = pods.job_queued(cluster, "exp-chief")
    assert line.startswith("queued by Kueue (Kueue queue team-a)") and "exp-chief" in line
    job.spec.suspend = False
    assert pods.job_queued(cluster, "exp-chief") is None


def test_without_a_default_class_the_claim_waits_for_a_static_volume_and_says_so(monkeypatch):
    import kubernetes.client

    from tunecluster.backends.kubernetes.storage import decide_storage
    from tunecluster.tuning.spec import validate_spec

    storage_api = NS(list_storage_class=lambda: NS(items=[_class("slow", "nfs")]))
    monkeypatch.setattr(kubernetes.client, "StorageV1Api", lambda api: storage_api)
    decision = decide_storage(NS(api=None, namespace="ns"), validate_spec({}, "t"))
    assert decision.access_mode == "ReadWriteOnce" and "no default StorageClass" in decision.message


def test_an_administrators_mark_on_the_class_makes_an_unknown_provisioner_shared():
    marked = _class("team-fs", "some.vendor/fuse-fs")
    marked.metadata.annotations["tunecluster.io/access-modes"] = "ReadWriteMany, ReadWriteOnce"
    decision = decide_for_class(marked, "auto")
    assert decision.access_mode == "ReadWriteMany" and decision.message is None
    unmarked = decide_for_class(_class("team-fs", "some.vendor/fuse-fs"), "auto")
    assert unmarked.access_mode == "ReadWriteOnce" and "tunecluster.io/access-modes" in unmarked.message


def _pending_unscheduled_free_pod(name="exp-workers-0-abc"):
    return NS(metadata=NS(name=name), status=NS(phase="Pending", container_statuses=[], init_container_statuses=[],
                                                 conditions=[]))


def test_a_mount_that_fails_once_and_then_works_is_not_a_problem():
    """The node authorizer may not yet have seen the pod bound to its node: the kubelet's first
    read of the claim is Forbidden, its retry works. `up` must not end on that."""
    race = _event("FailedMount", 'failed to process volumes=[shared]: error processing PVC tc/exp-shared: failed '
                  'to fetch PVC from API server: persistentvolumeclaims "exp-shared" is forbidden: '
                  'User "system:node:node-b" cannot get resource')
    assert pod_problems.pod_problem(_pending_unscheduled_free_pod(), [race, _event("Pulling", "image")]) is None
    cluster = _Events()
    clock = pod_problems.ProblemClock(grace=90, cluster=cluster)
    cluster.events = [race]
    assert clock.check(_pending_unscheduled_free_pod()) is None  # the kubelet retries: within the grace
    cluster.events = [race, _event("Pulled", "image")]
    assert clock.check(_pending_unscheduled_free_pod()) is None and not clock.first_seen


def test_a_mount_that_keeps_failing_is_reported_after_the_mount_grace():
    cluster = _Events()
    clock = pod_problems.ProblemClock(grace=90, cluster=cluster)
    assert clock.mount_grace == pod_problems.MOUNT_GRACE
    cluster.events = [_event("FailedMount", "MountVolume.SetUp failed: mount failed: exit status 32")]
    assert clock.check(_pending_unscheduled_free_pod()) is None
    clock.first_seen[("exp-workers-0-abc", "cannot be mounted")] = time.time() - pod_problems.MOUNT_GRACE
    assert "cannot be mounted" in clock.check(_pending_unscheduled_free_pod())
    cluster.events = [_event("FailedAttachVolume", 'Multi-Attach error for volume "pvc-1" Volume is already used')]
    assert "attached to another node" in clock.check(_pending_unscheduled_free_pod())  # at once
