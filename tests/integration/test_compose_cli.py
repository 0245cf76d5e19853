"""The compose backend from the command line, without Docker: `render --backend compose`, the
one-line errors of `up` when Docker, the compose tool or the port is missing, and a compose tool
that is gone since `up` (the one that runs now is used; `down` still cleans by labels)."""

from __future__ import annotations

import pytest
import yaml

from tunecluster.backends.compose import project
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.spec import validate_spec

from conftest import run_cli


def _spec(workers=2, **cluster):
    spec = example_spec("pima-optimizer").model_dump(mode="json")
    spec["cluster"].update(workers=workers, backend="compose", **cluster)
    return validate_spec(spec)


def test_render_cli_prints_compose_and_writes_nothing(tmp_path):
    done = run_cli("render", "--backend", "compose", "--example", "pima-optimizer", "--workers", "3",
                   "--dir", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    assert sorted(doc["services"]) == ["chief", "worker-0", "worker-1", "worker-2"]
    assert not (tmp_path / "run").exists()
    done = run_cli("render", "--backend", "local", "--example", "pima-optimizer", cwd=tmp_path)
    assert done.returncode == 2 and "nothing to render" in done.stderr


def _fake_path(tmp_path, scripts: dict) -> dict:
    """A PATH holding only fake `docker`/`docker-compose` scripts (shell builtins only)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir)}


@pytest.mark.parametrize("scripts, message", [
    ({}, "the docker CLI is not installed"),
    ({"docker": 'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1'},
     "no Docker engine reachable (Cannot connect to the Docker daemon"),
    ({"docker": 'case "$1" in version) echo 20.10;; compose) exit 1;; esac'}, "no compose tool found"),
    ({"docker": 'case "$1" in version) echo 20.10;; image) exit 1;; compose) exit 1;; esac',
      "docker-compose": "exit 0"}, "image tunecluster:0.1.0 not found"),
])
def test_up_one_line_errors(tmp_path, scripts, message):
    env = _fake_path(tmp_path, scripts)
    done = run_cli("up", "--backend", "compose", "--example", "pima-optimizer", "--dir", str(tmp_path / "run"),
                   cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr


def test_up_port_clash(tmp_path):
    import socket

    env = _fake_path(tmp_path, {"docker": 'case "$1" in version) echo 20.10;; compose) exit 1;; esac',
                                "docker-compose": "exit 0"})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run_cli("up", "--backend", "compose", "--example", "pima-optimizer", "--port", str(port),
                       "--dir", str(tmp_path / "run"), cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_compose_tool_gone_since_up_falls_back_and_down_still_cleans(tmp_path, monkeypatch):
    # A run started with one compose tool (cluster.json) whose tool is gone by `down` (v1 removed
    # after installing v2, or the reverse): the tool that runs now is used, and with none at all
    # `down` still removes the project by its labels.
    run = RunDir(tmp_path)
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    info = {"backend": "compose", "project": "tc-x-abcdef", "experiment": "x", "image": "i",
            "compose_command": [str(tmp_path / "no-such-docker-compose")],
            "compose_file": str(tmp_path / "docker-compose.yml"), "role_ids": {"chief": "chief"}}
    cluster = project.ComposeRun(run, info)
    monkeypatch.setattr(project, "compose_command", lambda: ["echo"])
    done = cluster.compose("down", "--volumes")
    assert done.returncode == 0 and done.stdout.split() == ["-p", "tc-x-abcdef", "-f", info["compose_file"],
                                                            "down", "--volumes"]

    def no_tool():
        raise UsageError("no compose tool found")

    removed = []
    monkeypatch.setattr(project, "compose_command", no_tool)
    monkeypatch.setattr(project.ComposeRun, "save_logs", lambda self: [])
    monkeypatch.setattr(project, "remove_project", lambda project, volumes: removed.append((project, volumes)) or [])
    assert cluster.down(volumes=True) == [] and removed == [("tc-x-abcdef", True)]
