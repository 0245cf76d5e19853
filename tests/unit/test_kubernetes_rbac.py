"""The Role of `render --rbac` holds exactly what the launcher uses: the launcher's functions run
against the real kubernetes client whose transport records every request (method and path, i.e.
verb and resource) and answers with canned objects; every recorded verb must be granted, and every
granted verb must have been used. A Forbidden anywhere is an error naming the verb and resource.
(The e2e bed runs `up` as a user bound only to this Role.)"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import tarfile
import urllib.parse

import pytest
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from tunecluster.backends.kubernetes import exec_stream, forward, lifecycle, pod_problems, pods, rbac, transfer
from tunecluster.backends.kubernetes.job_progress import JobProgress
from tunecluster.backends.kubernetes.apply import apply_objects, delete_experiment, experiment_objects
from tunecluster.backends.kubernetes.client import Cluster
from tunecluster.backends.kubernetes.render import Names
from tunecluster.backends.kubernetes.storage import decide_storage
from tunecluster.core.errors import UsageError
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.spec import validate_spec

NS = "team"
_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?/(?P<resource>[a-z]+)"
                   r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?$")


def _pod(name, role, phase="Running", ready=True):
    return {"metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"tunecluster.io/experiment": "pima-units", "tunecluster.io/role": role}},
            "spec": {"containers": [{"name": role, "image": "x"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class _Response:
    """What the client's transport returns (kubernetes.client.rest.RESTResponse's interface)."""

    def __init__(self, data, content_type="application/json"):
        self.status, self.reason = 200, "OK"
        self.data = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.headers = {"content-type": content_type}

    def read(self):
        return self.data

    def getheader(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def getheaders(self):
        return self.headers


class RecordingApi(ApiClient):
    """The real client; its transport records (verb, group, resource, name) and answers canned."""

    def __init__(self, forbid=None):
        super().__init__(Configuration(host="https://k8s.test"))
        self.calls: list[tuple[str, str, str, str]] = []
        self.bodies: list[tuple] = []
        self.forbid = forbid  # (verb, resource) answered 403

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        parsed = urllib.parse.urlsplit(url)
        found = _PATH.match(parsed.path)
        assert found, url
        group, resource, name, sub = found["group"] or "", found["resource"], found["name"], found["sub"]
        query = dict(urllib.parse.parse_qsl(parsed.query))
        verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}.get(method) or (
            "get" if name else "watch" if query.get("watch") in ("true", "True") else "list")
        full = f"{resource}/{sub}" if sub else resource
        self.calls.append((verb, group, full, name))
        self.bodies.append((verb, full, name, body, dict(query)))
        if verb == "patch" and full == "jobs" and "fieldManager" not in query:  # the progress marks
            assert set(body["metadata"]) <= {"annotations", "labels"}, body
        elif verb == "patch":
            assert (header_params or {}).get("Content-Type") == "application/apply-patch+yaml"
            assert query["fieldManager"].startswith("tunecluster") and query["force"] in ("true", "True")
        if self.forbid == (verb, full):
            raise ApiException(status=403, reason="Forbidden")
        data = self.answer(verb, full, name, body)
        if isinstance(data, ApiException):
            raise data
        return _Response(data.encode() if isinstance(data, str) else data,
                         "text/plain" if isinstance(data, str) else "application/json")

    def answer(self, verb, resource, name, body):
        if verb == "watch":
            return ApiException(status=500, reason="no watches in this test")
        if verb == "patch":
            return {**body, "metadata": {"name": name, **body["metadata"], "uid": f"uid-{name}"}}
        if verb == "delete":
            return _pod(name, "pull") if resource == "pods" else {"metadata": {"name": name}}
        if resource == "secrets":
            return ApiException(status=404, reason="Not Found")
        if resource == "storageclasses" and name:
            return {"metadata": {"name": name}, "provisioner": "nfs.csi.k8s.io"}
        if resource == "storageclasses":
            return {"items": [{"metadata": {"name": "standard", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "rancher.io/local-path"}]}
        if resource == "pods" and verb == "list":
            return {"items": [_pod("pima-units-chief-abc", "chief")]}
        if resource == "pods":
            return _pod(name, "pull")
        if resource == "pods/log":
            return "a log line\n"
        if resource == "events":
            return {"items": [{"metadata": {"name": "e1"}, "involvedObject": {}, "reason": "Scheduled",
                               "message": "ok"}]}
        if verb == "list":
            spec = {"jobs": {"template": {}}, "deployments": {"selector": {"matchLabels": {}}, "template": {}}}
            item = {"metadata": {"name": f"{resource}-1"}}
            return {"items": [{**item, "spec": spec[resource]} if resource in spec else item]}
        if resource in ("jobs", "jobs/status"):
            return {"metadata": {"name": name, "labels": {}}, "spec": {"suspend": False, "template": {}},
                    "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
        if resource == "persistentvolumeclaims":
            return {"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"]},
                    "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"]}}
        if resource == "deployments" and verb == "get":
            return {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {}}, "template": {}}}
        return {"metadata": {"name": name}}


def _empty_tar() -> str:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w"):
        pass
    return base64.b64encode(gzip.compress(raw.getvalue())).decode()


@pytest.fixture
def recorded(monkeypatch):
    import kubernetes.stream

    api = RecordingApi()

    def stream(api_method, name, namespace, **kwargs):  # exec: a websocket that RBAC checks as create
        api.calls.append(("create", "", "pods/exec", name))
        return _empty_tar() if "import base64" in " ".join(kwargs.get("command", [])) else '{"finished": true}'

    monkeypatch.setattr(kubernetes.stream, "stream", stream)

    class ExecStream:  # pull's byte stream over the exec websocket: also a `create pods/exec`
        def __init__(self, cluster, pod, command, **kwargs):
            api.calls.append(("create", "", "pods/exec", pod))

        def finish(self, on_stdout=None, on_stderr=None):
            raw = io.BytesIO()
            with tarfile.open(fileobj=raw, mode="w") as tar:
                info = tarfile.TarInfo("progress.json")
                info.size = 2
                tar.addfile(info, io.BytesIO(b"{}"))
            data = raw.getvalue()
            on_stdout(data)
            on_stderr(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}).encode() + b"\n")
            return exec_stream.ExecResult(0, b"", b"")

    monkeypatch.setattr(transfer, "ExecStream", ExecStream)
    return api


def _spec():
    raw = example_spec("pima-units").model_dump(mode="json")
    raw["cluster"]["kubernetes"].update(queue_name="q", tensorboard=True)
    return validate_spec(raw, "test")


def _run_the_launcher(cluster: Cluster, tmp_logs) -> None:
    """Every launcher function that talks to the API server, as `up`, status, results, logs,
    pull, tensorboard and `down` call them."""
    spec = _spec()
    names = Names(spec.name)
    storage = decide_storage(cluster, spec)
    assert storage.access_mode == "ReadWriteOnce" and "pod affinity" in storage.message  # local-path: pinned
    named = spec.model_copy(deep=True)
    named.cluster.kubernetes.storage_class = "shared-nfs"
    assert decide_storage(cluster, named).access_mode == "ReadWriteMany"
    objects = experiment_objects(cluster, spec, tensorboard=True, storage=storage)
    apply_objects(cluster, objects)
    assert pods.wait_for_chief(cluster, spec, timeout=5) == "pima-units-chief-abc"
    pending = ApiClient().deserialize(json.dumps(_pod("pima-units-workers-0", "worker", "Pending", False)),
                                      "V1Pod", "application/json")
    pod_problems.ProblemClock.for_spec(cluster, spec).check(pending)
    pods.watch_once(cluster, "pods", "x", 1)
    pods.watch_once(cluster, "jobs", "x", 1)
    assert pods.job_state(cluster, names.chief) == "Complete"
    assert pods.pending_claim(cluster, spec) is None
    assert pods.read_shared_json(cluster, "pima-units-chief-abc", "progress.json") == {"finished": True}
    out = io.StringIO()
    pods.logs(cluster, spec.name, "chief", tail=10, follow=False, out=out)
    assert out.getvalue() == "a log line\n"
    found = lifecycle.presence(cluster, spec.name)
    assert found.chief_job and found.claim
    marks = JobProgress(cluster, names.chief)
    assert marks.publish({"counts": {"completed": 1}, "max_trials": 4}), marks.error
    assert lifecycle.save_pod_logs(cluster, spec.name, tmp_logs) == {"chief": ["pima-units-chief-abc.log"]}
    assert forward.deployment_exists(cluster, names.tensorboard)
    assert forward.claim_exists(cluster, names.claim)
    delete_experiment(cluster, spec.name, keep_volume=False, timeout=0)


def test_the_role_grants_every_call_the_launcher_makes_and_nothing_more(recorded, tmp_path, monkeypatch):
    cluster = Cluster(recorded, NS, None, "https://k8s.test")
    _run_the_launcher(cluster, tmp_path / "logs")
    spec = _spec()
    transfer.pull(cluster, spec, tmp_path, require_model=False, names=("progress.json",))
    role_rules = rbac.role(NS, experiments=["pima-units"])["rules"]
    cluster_rules = rbac.storage_cluster_role()["rules"]
    used: dict[tuple[str, str], set[str]] = {}
    for verb, group, resource, name in recorded.calls:
        rules = cluster_rules if resource == "storageclasses" else role_rules
        assert rbac.grants(rules, verb, group, resource, name), f"the Role lacks {verb} {group}/{resource} {name}"
        used.setdefault((group, resource), set()).add(verb)
        if verb == "patch":  # server-side apply creates what is missing
            assert rbac.grants(rules, "create", group, resource)
            used[(group, resource)].add("create")
    # only what the launcher uses: websocket verbs of older servers and the port-forward (a live
    # socket, tested in e2e) are the only grants this run does not exercise
    not_exercised = {("", "pods/exec"): {"get"}, ("", "pods/portforward"): {"create", "get"}}
    for key, verbs in {**rbac.USES, **rbac.CLUSTER_USES}.items():
        missing = set(verbs) - used.get(key, set()) - not_exercised.get(key, set())
        assert not missing, f"the Role grants {sorted(missing)} on {key} but the launcher never uses them"
    assert ("get", "batch", "jobs/status", "pima-units-chief") in recorded.calls
    assert not any(r == "secrets" and v in ("list", "watch") for v, _, r, _ in recorded.calls)


def test_secrets_are_limited_to_the_experiments_names():
    rules = rbac.role(NS, experiments=["a", "b"])["rules"]
    assert rbac.grants(rules, "get", "", "secrets", "a-oracle")
    assert not rbac.grants(rules, "get", "", "secrets", "team-db-password")
    assert not rbac.grants(rules, "list", "", "secrets") and rbac.grants(rules, "create", "", "secrets")
    generic = rbac.role(NS)["rules"]
    assert not rbac.grants(generic, "list", "", "secrets") and rbac.grants(generic, "get", "", "secrets", "x")


@pytest.mark.parametrize("forbid, call, message", [
    (("get", "jobs/status"), lambda c, s: pods.job_state(c, "pima-units-chief"), "may not get jobs/status"),
    (("get", "persistentvolumeclaims"), lambda c, s: pods.pending_claim(c, s), "may not get persistentvolumeclaims"),
    (("get", "jobs"), lambda c, s: pods.job_queued(c, "pima-units-chief"), "may not get jobs"),
    (("watch", "pods"), lambda c, s: pods.watch_once(c, "pods", "x", 1), "may not watch pods"),
    (("list", "events"), lambda c, s: pod_problems.pod_events(c, "p"), "may not list events"),
])
def test_a_forbidden_answer_is_an_error_naming_the_verb_never_still_running(forbid, call, message, recorded):
    recorded.forbid = forbid
    cluster = Cluster(recorded, NS, None, "https://k8s.test")
    with pytest.raises(UsageError, match=message) as caught:
        call(cluster, _spec())
    assert f"namespace {NS}" in str(caught.value) and "render --rbac" in str(caught.value)


def test_a_refused_exec_websocket_is_named_too(monkeypatch):
    import kubernetes.stream

    def refused(*args, **kwargs):
        raise ApiException(status=0, reason="Handshake status 403 Forbidden")

    monkeypatch.setattr(kubernetes.stream, "stream", refused)
    cluster = Cluster(RecordingApi(), NS, None, "https://k8s.test")
    with pytest.raises(UsageError, match="may not create pods/exec"):
        pods.read_shared_json(cluster, "p", "progress.json")


def test_a_deleted_job_is_not_running():
    class Gone(RecordingApi):
        def answer(self, verb, resource, name, body):
            return ApiException(status=404, reason="Not Found")

    assert pods.job_state(Cluster(Gone(), NS, None, "x"), "j") == "Deleted"


def test_the_chief_job_owns_the_other_objects_but_the_volume(recorded):
    cluster = Cluster(recorded, NS, None, "https://k8s.test")
    spec = _spec()
    objects = experiment_objects(cluster, spec, tensorboard=True)
    apply_objects(cluster, objects)
    patches = [(resource, name, body, query) for verb, resource, name, body, query in recorded.bodies
               if verb == "patch"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "pima-units-chief", "uid": "uid-pima-units-chief",
             "blockOwnerDeletion": False, "controller": False}
    kinds_owned = {(resource, name) for resource, name, body, _ in patches
                   if body["metadata"].get("ownerReferences") == [owner]}
    assert kinds_owned == {("configmaps", "pima-units-config"), ("secrets", "pima-units-oracle"),
                           ("services", "pima-units-chief"), ("jobs", "pima-units-workers"),
                           ("networkpolicies", "pima-units-oracle"), ("deployments", "pima-units-tensorboard"),
                           ("services", "pima-units-tensorboard")}
    assert not any(resource == "persistentvolumeclaims" and body["metadata"].get("ownerReferences")
                   for resource, _, body, _ in patches)
    assert not any(resource == "jobs" and name == "pima-units-chief" and body["metadata"].get("ownerReferences")
                   for resource, name, body, _ in patches)
    # objects applied before the chief Job get their owner in an owner-only apply of their own manager
    late = [(resource, body) for resource, name, body, query in patches if query["fieldManager"] == "tunecluster-owner"]
    assert sorted(r for r, _ in late) == ["configmaps", "secrets"]
    assert all(set(body["metadata"]) == {"name", "namespace", "ownerReferences"} and "data" not in body
               for _, body in late)
    # a Job that exists keeps its suspend (Kueue may have admitted it)
    jobs = [body for resource, _, body, query in patches if resource == "jobs" and query["fieldManager"] == "tunecluster"]
    assert jobs and all("suspend" not in body["spec"] for body in jobs)
