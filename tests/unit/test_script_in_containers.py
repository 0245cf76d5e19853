"""`up --script` on compose and Kubernetes, without Docker or a cluster: the script's folder is
what travels (minus ignored files), its arguments are rewritten for the containers (files of the
folder relative to the script, files elsewhere on this machine refused in one line), and every
role's command runs the script from where the folder lands. The compose and Kubernetes e2e suites
run a script for real."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import pytest

from tunecluster.backends import get_backend
from tunecluster.backends.base import UpOptions
from tunecluster.backends.compose import inputs, render as compose_render
from tunecluster.backends.kubernetes.render import render as kubernetes_render
from tunecluster.backends.script_carry import map_argument, script_in_containers
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir
from tunecluster.script.tuner_spec import script_experiment


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "search.py").write_text("import layers\n")
    (root / "layers.py").write_text("X = 1\n")
    (root / "data" / "pima.csv").write_text("a,b\n1,0\n")
    (root / ".venv").mkdir()
    (root / ".venv" / "big.py").write_text("")
    (root / ".tunecluster-ignore").write_text("notes.txt\n")
    (root / "notes.txt").write_text("private")
    return root


@pytest.mark.parametrize("backend", ["local", "compose", "kubernetes"])
def test_every_backend_starts_a_script(backend):
    get_backend(backend).check_script(UpOptions(script=("s.py",)))


def test_arguments_are_read_as_the_containers_will_read_them(tmp_path):
    root = _folder(tmp_path)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("x")
    assert map_argument(str(root / "data" / "pima.csv"), root, root) == "data/pima.csv"
    assert map_argument("data/pima.csv", root, root) == "data/pima.csv"
    assert map_argument(f"--csv={root / 'data' / 'pima.csv'}", root, root) == "--csv=data/pima.csv"
    for kept in ("--epochs", "3", "/shared/data/big.csv", "no-such-file.csv", "--out=/models"):
        assert map_argument(kept, root, root) == kept
    for refused in (str(outside), "../elsewhere.csv", f"--csv={outside}"):
        with pytest.raises(UsageError, match="outside the folder carried to the containers"):
            map_argument(refused, root, root)


def test_the_script_must_be_inside_the_folder_carried(tmp_path):
    root = _folder(tmp_path)
    carried = script_in_containers((str(root / "search.py"), str(root / "data" / "pima.csv"), "2"), "/code")
    assert carried.root == root.resolve() and carried.command == ("/code/search.py", "data/pima.csv", "2")
    with pytest.raises(UsageError, match="not inside the folder carried"):
        script_in_containers((str(root / "search.py"),), "/code", tmp_path / "other")


def test_compose_copies_the_scripts_folder_and_runs_it_there(tmp_path):
    root = _folder(tmp_path)
    script = (str(root / "search.py"), str(root / "data" / "pima.csv"))
    spec = script_experiment(root / "search.py", workers=2)
    doc = compose_render.render_compose(spec, compose_render.ComposeOptions(run_root=tmp_path / "run", script=script))
    for service in ("chief", "worker-0", "worker-1"):
        assert doc["services"][service]["command"] == ["script", "/tunecluster/input/code/search.py", "data/pima.csv"]
    run = RunDir(tmp_path / "run")
    inputs.write_inputs(run, spec, script)
    code = run.root / "input" / "code"
    assert sorted(p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()) == [
        ".tunecluster-ignore", "data/pima.csv", "layers.py", "search.py"]
    with pytest.raises(UsageError, match="outside the folder"):
        inputs.stage_script((str(root / "search.py"), str(tmp_path / "run" / "input" / "spec.yaml")))


def test_kubernetes_carries_the_scripts_folder_in_the_project_configmaps(tmp_path):
    root = _folder(tmp_path)
    script = (str(root / "search.py"), str(root / "data" / "pima.csv"))
    spec = script_experiment(root / "search.py", workers=2).model_copy(deep=True)
    spec.cluster.backend = "kubernetes"
    objects = kubernetes_render(spec, namespace="tuning", token="t", script=script)
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert jobs and all(o["spec"]["template"]["spec"]["containers"][0]["command"]
                        == ["tunecluster", "script", "/code/search.py", "data/pima.csv"] for o in jobs)
    parts = [o for o in objects if o["kind"] == "ConfigMap" and "binaryData" in o]
    archive = b"".join(base64.b64decode(o["binaryData"]["part"]) for o in parts)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == [".tunecluster-ignore", "data/pima.csv", "layers.py", "search.py"]
    spec.cluster.kubernetes.code = "image"
    with pytest.raises(UsageError, match="code is 'image'"):
        kubernetes_render(spec, namespace="tuning", token="t", script=script)
