"""The Kubernetes follow's decision on pod problems (`follow.KubernetesSession.alive`), with the
cluster's answers scripted: a pod that cannot pull its image ends the follow while the search
runs, and changes nothing once the mirrored progress says the search has finished (the chief
Job's end decides then). The real path runs in the e2e_kubernetes suite."""

from __future__ import annotations

from kubernetes import client

from tunecluster.backends.kubernetes import follow
from tunecluster.core.rundir import RunDir, write_json
from tunecluster.tuning.spec import validate_spec


def _pulling_pod():
    status = client.V1ContainerStatus(
        name="worker", image="10.0.0.1:5443/tunecluster/project:e2e", image_id="", ready=False, restart_count=0,
        state=client.V1ContainerState(waiting=client.V1ContainerStateWaiting(
            reason="InvalidImageName", message="invalid reference format")))
    return client.V1Pod(metadata=client.V1ObjectMeta(name="exp-workers-0-b7m9c", labels={}),
                        status=client.V1PodStatus(phase="Pending", container_statuses=[status], conditions=[]))


def _session(tmp_path, monkeypatch, chief_job):
    monkeypatch.setattr(follow, "watch_once", lambda *a, **k: [])
    monkeypatch.setattr(follow, "role_pods", lambda cluster, name, role=None: [] if role == "chief" else [_pulling_pod()])
    monkeypatch.setattr(follow, "job_state", lambda cluster, name: chief_job)
    spec = validate_spec({"name": "exp"}, "t")
    session = follow.KubernetesSession(None, spec, RunDir(tmp_path / "run"), say=lambda text: None)
    session.run.root.mkdir(parents=True)
    return session


def test_a_pod_problem_ends_the_follow_while_the_search_runs(tmp_path, monkeypatch):
    session = _session(tmp_path, monkeypatch, chief_job=None)
    write_json(session.run.progress, {"finished": False, "counts": {"total": 3, "running": 1}})
    assert session.alive() is False
    assert "exp-workers-0-b7m9c" in session.problem and "cannot be pulled" in session.problem


def test_a_pod_problem_after_the_search_finished_changes_nothing(tmp_path, monkeypatch):
    session = _session(tmp_path, monkeypatch, chief_job=None)
    write_json(session.run.progress, {"finished": True, "counts": {"total": 3, "running": 0}})
    assert session.alive() is True and session.problem is None  # the chief Job has not ended yet
    session_done = _session(tmp_path / "b", monkeypatch, chief_job="Complete")
    write_json(session_done.run.progress, {"finished": True})
    assert session_done.alive() is False and session_done.problem is None
