"""The compose rendering and the compose backend's pieces, without Docker: the services, their
environment, the volume, the token secret, the inputs, restart and GPU settings, the image's
health check, `compose up` errors as one line, and reading containers and copies out of them."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tunecluster.backends.compose import backend, inputs, project, render
from tunecluster.cluster.run_secrets import RunSecrets
from tunecluster.cluster.health import healthy
from tunecluster.core.rundir import RunDir
from tunecluster.core.errors import UsageError
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.spec import load_spec, validate_spec


def _spec(workers=2, **cluster):
    spec = example_spec("pima-optimizer").model_dump(mode="json")
    spec["cluster"].update(workers=workers, backend="compose", **cluster)
    return validate_spec(spec)


def _doc(tmp_path, spec=None, **options):
    return render.render_compose(spec or _spec(), render.ComposeOptions(run_root=tmp_path, **options))


def test_services_roles_and_environment(tmp_path):
    doc = _doc(tmp_path, _spec(workers=3), tf_threads=2)
    assert list(doc["services"]) == ["chief", "worker-0", "worker-1", "worker-2"]
    chief = doc["services"]["chief"]
    assert chief["command"] == ["chief"]
    assert chief["environment"]["KERASTUNER_TUNER_ID"] == "chief"
    assert chief["environment"]["KERASTUNER_ORACLE_IP"] == "0.0.0.0"
    assert chief["restart"] == "no" and "ports" not in chief and "depends_on" not in chief
    for i in range(3):
        worker = doc["services"][f"worker-{i}"]
        env = worker["environment"]
        assert worker["command"] == ["worker"]
        assert env["KERASTUNER_TUNER_ID"] == f"tuner{i}"  # stable ids, one per service
        assert env["KERASTUNER_ORACLE_IP"] == "chief" and env["KERASTUNER_ORACLE_PORT"] == "8000"
        assert env["TUNECLUSTER_TF_THREADS"] == "2"
        assert worker["restart"] == "on-failure" and worker["depends_on"] == ["chief"]
        assert "deploy" not in worker
    for service in doc["services"].values():
        env = service["environment"]
        assert service["image"] == render.DEFAULT_IMAGE
        assert env["TUNECLUSTER_RUN_DIR"] == "/tunecluster/runs/pima-optimizer"
        assert env["TUNECLUSTER_SPEC"] == "/tunecluster/input/spec.yaml"
        assert env["TUNECLUSTER_TOKEN_FILE"] == "/run/secrets/tunecluster_token"
        assert all(isinstance(v, str) for v in env.values())  # compose wants strings
        assert service["volumes"] == ["runs:/tunecluster/runs", f"{tmp_path.resolve()}/input:/tunecluster/input:ro"]
        assert service["secrets"] == ["tunecluster_token"]
        assert service["init"] is True
        assert "user" not in service


def test_volume_secret_and_no_token_value(tmp_path):
    doc = _doc(tmp_path)
    assert list(doc["volumes"]) == ["runs"]
    assert doc["secrets"] == {"tunecluster_token": {"file": str(tmp_path.resolve() / "secrets" / "token")}}
    assert "version" not in doc  # the Compose Specification: read by compose v1 (>=1.27) and v2
    text = render.compose_yaml(doc, "tc-x")
    assert yaml.safe_load(text) == doc
    assert "TUNECLUSTER_TOKEN:" not in text


def test_port_gpus_user_and_image(tmp_path):
    doc = _doc(tmp_path, port=9123, gpus=2, user="1000:0", image="me/tc:gpu")
    chief = doc["services"]["chief"]
    assert chief["ports"] == ["127.0.0.1:9123:9123"]  # published on loopback only
    assert chief["environment"]["KERASTUNER_ORACLE_PORT"] == "9123"
    assert "deploy" not in chief
    worker = doc["services"]["worker-1"]
    assert worker["deploy"] == {"resources": {"reservations": {"devices": [
        {"driver": "nvidia", "capabilities": ["gpu"], "count": 2}]}}}
    assert worker["environment"]["KERASTUNER_ORACLE_PORT"] == "9123"
    assert all(s["user"] == "1000:0" and s["image"] == "me/tc:gpu" for s in doc["services"].values())
    assert _doc(tmp_path, gpus="all")["services"]["worker-0"]["deploy"]["resources"]["reservations"][
        "devices"][0]["count"] == "all"


def test_parse_gpus():
    assert render.parse_gpus(None) is None and render.parse_gpus("0") is None
    assert render.parse_gpus("all") == "all" and render.parse_gpus("2") == 2
    with pytest.raises(UsageError, match="--gpus"):
        render.parse_gpus("two")


def test_project_name_per_run_dir(tmp_path):
    a = render.project_name("pima", tmp_path / "a")
    assert a == render.project_name("pima", tmp_path / "a")
    assert a != render.project_name("pima", tmp_path / "b")
    assert a.startswith("tc-pima-") and len(a) == len("tc-pima-") + 6


def test_stage_inputs_example_and_files(tmp_path):
    staged = inputs.stage_inputs(example_spec("pima-optimizer"))
    assert staged.spec.data.csv == "data/diabetes.csv"
    assert staged.spec.hypermodel == "tunecluster.tuning.examples.pima:build_optimizer"  # in the image
    assert [rel for _, rel in staged.files] == ["data/diabetes.csv"]

    (tmp_path / "model.py").write_text("def build(hp):\n    return None\n")
    (tmp_path / "rows.csv").write_text("a,Outcome\n1,0\n")
    (tmp_path / "tunecluster.yaml").write_text("name: mine\nhypermodel: model.py:build\ndata: {csv: rows.csv}\n")
    staged = inputs.stage_inputs(load_spec(tmp_path / "tunecluster.yaml"))
    assert staged.spec.hypermodel == "code/model.py:build"
    assert sorted(rel for _, rel in staged.files) == ["code/model.py", "data/rows.csv"]


def test_stage_inputs_carry_a_run_trial_file(tmp_path):
    (tmp_path / "trial.py").write_text("def run_trial(hp):\n    return 0.5\n")
    (tmp_path / "tunecluster.yaml").write_text("name: mine\nrun_trial: trial.py:run_trial\n")
    staged = inputs.stage_inputs(load_spec(tmp_path / "tunecluster.yaml"))
    assert staged.spec.run_trial == "code/trial.py:run_trial" and staged.spec.hypermodel is None
    assert [rel for _, rel in staged.files] == ["code/trial.py"]
    example = inputs.stage_inputs(example_spec("pima-forest"))  # a module of the image's own package
    assert example.spec.run_trial == "tunecluster.tuning.examples.forest:run_trial"


def test_stage_inputs_unknown_module():
    spec = _spec().model_dump(mode="json")
    spec["hypermodel"] = "no_such_module_here:build"
    with pytest.raises(UsageError, match="not importable"):
        inputs.stage_inputs(validate_spec(spec))


def test_write_inputs_and_token(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    inputs.write_inputs(run, example_spec("pima-optimizer"))
    staged = load_spec(run.root / "input" / "spec.yaml")  # relative paths resolve inside input/
    assert Path(staged.data.csv) == run.root / "input" / "data" / "diabetes.csv"
    assert Path(staged.data.csv).is_file()
    assert stat.S_IMODE((run.root / "input" / "data" / "diabetes.csv").stat().st_mode) == 0o644
    token = RunSecrets(run.root, owner_uid=render.IMAGE_UID).ensure_token()
    assert token == run.root / "secrets" / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) >= 40
    first = token.read_text()
    RunSecrets(run.root, owner_uid=render.IMAGE_UID).ensure_token()
    assert token.read_text() == first  # a resumed run keeps its token ...
    other = RunSecrets(tmp_path / "other", owner_uid=render.IMAGE_UID).ensure_token()
    assert other.read_text() != first  # ... and each run has its own
    if os.geteuid() == 0:
        assert token.stat().st_uid == render.IMAGE_UID  # the image's user reads it


def test_up_error_mapping():
    assert "is in use" in str(backend.up_error("Bind for 127.0.0.1:9000 failed: port is already allocated", 9000, "i"))
    assert "not found" in str(backend.up_error("pull access denied for tunecluster", None, "tunecluster:0.1.0"))
    assert str(backend.up_error("boom\nreal reason\n", None, "i")) == "compose up failed: real reason"


def test_healthcheck(monkeypatch):
    import socket

    assert healthy({"KERASTUNER_TUNER_ID": "tuner0"})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert healthy({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_PORT": str(port)})
    assert not healthy({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_PORT": str(port)}, timeout=0.5)
    assert not healthy({"KERASTUNER_TUNER_ID": "chief"})


def _tar_of(entries: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_copy_out_unpacks_files_and_folders(tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "stale.txt").write_text("old")
    project._extract_into(_tar_of({"progress.json": b'{"finished": true}'}), tmp_path, "progress.json")
    project._extract_into(_tar_of({"best": None, "best/model.keras": b"k"}), tmp_path, "best")
    assert (tmp_path / "progress.json").read_text() == '{"finished": true}'
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["model.keras"]  # replaced as a whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy-")]


def test_a_torn_copy_is_read_again_and_never_replaces_the_file(tmp_path, monkeypatch):
    """`docker cp` of a file replaced mid-copy gives the new file cut to the old one's size (a JSON
    that does not parse) or a tar cut short (seen in CI: `ReadError: unexpected end of data`)."""
    (tmp_path / "progress.json").write_text('{"i": 1}')
    whole = _tar_of({"progress.json": b'{"i": 3}'})
    cut_json, cut_tar = _tar_of({"progress.json": b'{"i": 2, "pa'}), whole[:515]
    for torn in (cut_json, cut_tar):
        with pytest.raises(project.TornCopy):
            project._extract_into(torn, tmp_path, "progress.json")
    assert (tmp_path / "progress.json").read_text() == '{"i": 1}'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy-")]

    def docker_giving(*reads):
        answers = iter(reads)
        calls = []

        def docker(*args, **kwargs):
            calls.append(args)
            return subprocess.CompletedProcess(args, 0, next(answers), b"")
        return docker, calls

    monkeypatch.setattr(project.time, "sleep", lambda seconds: None)
    docker, calls = docker_giving(cut_json, cut_tar, whole)
    monkeypatch.setattr(project, "docker", docker)
    assert project.copy_path("chief", "/runs/x/progress.json", tmp_path, "progress.json")
    assert len(calls) == 3 and (tmp_path / "progress.json").read_text() == '{"i": 3}'
    docker, calls = docker_giving(*[cut_json] * 3)
    monkeypatch.setattr(project, "docker", docker)
    assert not project.copy_path("chief", "/runs/x/progress.json", tmp_path, "progress.json", tries=3)
    assert len(calls) == 3 and (tmp_path / "progress.json").read_text() == '{"i": 3}'  # kept


def test_roles_from_docker_inspect(tmp_path):
    run = RunDir(tmp_path)
    info = {"backend": "compose", "project": "tc-x-abcdef", "experiment": "x", "image": "i",
            "compose_file": str(tmp_path / "docker-compose.yml"),
            "role_ids": {"chief": "chief", "worker-0": "tuner0", "worker-1": "tuner1"},
            "restarted_by_up": {"worker-1": 1}}
    cluster = project.ComposeRun(run, info)

    def item(status, code=0, pid=0, restarts=0, health=None):
        state = {"Status": status, "ExitCode": code, "Pid": pid}
        if health:
            state["Health"] = {"Status": health}
        return {"Id": "0123456789ab", "Name": "/c", "RestartCount": restarts, "State": state}

    roles = {r["name"]: r for r in cluster.roles({"chief": item("running", pid=42, health="healthy"),
                                                   "worker-1": item("exited", 137, restarts=2)})}
    assert roles["chief"]["state"] == "running" and roles["chief"]["pid"] == 42 and roles["chief"]["health"] == "healthy"
    assert roles["worker-0"]["state"] == "removed" and roles["worker-0"]["exit_code"] is None
    assert roles["worker-1"]["state"] == "failed" and roles["worker-1"]["exit_code"] == 137
    assert roles["worker-1"]["restarts"] == 3  # Docker's two and the one `up` made
    assert project.ComposeRun.of(run) is None  # no cluster.json yet
    cluster.record({})
    assert project.ComposeRun.of(run).project == "tc-x-abcdef"
