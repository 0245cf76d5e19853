"""The Backend interface: one registry, every backend complete, one `status` schema, and what
a backend refuses instead of ignoring."""

from __future__ import annotations

import inspect
import json
import os

import pytest
import yaml
from cryptography import x509

from tunecluster.backends import NAMES, backend_of_run, get_backend
from tunecluster.backends.base import Backend, DownOptions, RenderOptions
from tunecluster.backends.kubernetes.render import Names, chief_dns_names
from tunecluster.backends.status import ClusterStatus, RoleStatus
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, write_json
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.spec import validate_spec


@pytest.mark.parametrize("name", NAMES)
def test_every_backend_implements_the_interface(name):
    backend = get_backend(name)
    assert isinstance(backend, Backend) and backend.name == name
    abstract = [m for m, v in inspect.getmembers(type(backend)) if getattr(v, "__isabstractmethod__", False)]
    assert abstract == []


def test_an_unknown_backend_and_the_recorded_one(tmp_path):
    with pytest.raises(UsageError, match="unknown backend 'swarm'"):
        get_backend("swarm")
    run = RunDir(tmp_path)
    assert backend_of_run(run).name == "local"  # nothing recorded: a local run
    write_json(run.cluster, {"backend": "compose"})
    assert backend_of_run(run).name == "compose"


def test_local_status_has_the_common_schema(tmp_path):
    run = RunDir(tmp_path)
    run.spec.write_text("name: x\n")
    write_json(run.cluster, {"backend": "local", "experiment": "x", "chief_address": "127.0.0.1:1",
                             "launcher_pid": None, "roles": [
                                 {"name": "chief", "tuner_id": "chief", "pid": os.getpid(), "state": "running",
                                  "exit_code": None, "restarts": 0, "given_up": False},
                                 {"name": "worker-0", "tuner_id": "tuner0", "pid": 1, "state": "failed",
                                  "exit_code": 1, "restarts": 2, "given_up": True}]})
    write_json(run.progress, {"finished": False, "counts": {"completed": 1}, "best": None,
                              "workers": {"tuner0": {"trial": "3", "epoch": 2}}})
    status = get_backend("local").status(run)
    document = json.loads(json.dumps(status.to_json()))
    assert sorted(document) == sorted(ClusterStatus.__dataclass_fields__.keys() - {"progress"})
    assert sorted(document["roles"][0]) == sorted(RoleStatus.__dataclass_fields__)
    assert document["backend"] == "local" and document["chief_address"] == "127.0.0.1:1"
    assert document["counts"] == {"completed": 1} and document["finished"] is False
    roles = {r["name"]: r for r in document["roles"]}
    assert roles["worker-0"]["given_up"] and roles["worker-0"]["exit_code"] == 1
    assert roles["chief"]["state"] == "gone"  # this process is not a tunecluster chief


@pytest.mark.parametrize("name, options, refused", [
    ("local", DownOptions(volumes=True), "--volumes is for compose runs"),
    ("local", DownOptions(keep_volume=True), "--keep-volume is for Kubernetes runs"),
    ("kubernetes", DownOptions(volumes=True), "--volumes is for compose runs"),
])
def test_down_options_of_another_backend_are_refused(tmp_path, name, options, refused):
    with pytest.raises(UsageError, match=refused):
        get_backend(name).down(RunDir(tmp_path), options)


def test_rbac_and_local_render_are_refused_where_they_mean_nothing():
    with pytest.raises(UsageError, match="--rbac is for the kubernetes backend"):
        get_backend("compose").render_rbac("ns", None)
    with pytest.raises(UsageError, match="nothing to render"):
        get_backend("local").render(example_spec("pima-optimizer"), RenderOptions())


def test_render_include_secret_certifies_the_names_up_does():
    """`render --include-secret` and `up` make the chief's certificate for the same names (before:
    3 names from render, 5 from up)."""
    raw = example_spec("pima-optimizer").model_dump(mode="json")
    raw["cluster"]["tls"] = True
    spec = validate_spec(raw)
    text = get_backend("kubernetes").render(spec, RenderOptions(namespace="team", include_secret=True))
    secret = next(o for o in yaml.safe_load_all(text) if o and o["kind"] == "Secret")
    cert = x509.load_pem_x509_certificate(secret["stringData"]["tls.crt"].encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert tuple(names) == chief_dns_names(Names(spec.name), "team")
    assert "pima-optimizer-chief.team.svc.cluster.local" in names


def test_render_with_an_image_goes_through_the_spec_and_changes_nothing_it_was_given():
    spec = example_spec("pima-optimizer")
    before = spec.model_dump()
    text = get_backend("kubernetes").render(spec, RenderOptions(image="registry.local/tc:7"))
    images = {c["image"] for o in yaml.safe_load_all(text) if o and o["kind"] == "Job"
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.local/tc:7"} and spec.model_dump() == before
