"""`tunecluster build` without Docker: the project it reads (name, version, install files, the
files the image takes), the generated Dockerfile and context, `--push` references, the one line
for each way a registry refuses a push, and the record `up` reads (docker runs in
tests/e2e/test_image_build_push.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunecluster import __version__
from tunecluster.backends.image_build import (TUNECLUSTER_IMAGE, Project, dockerfile, image_name, project_files,
                                              push_error, push_target, read_project, write_context)
from tunecluster.backends.image_record import recorded_image, write_record
from tunecluster.core.errors import RunFailure, UsageError


def _project(root: Path, pyproject: str | None = None, requirements: bool = True) -> Path:
    (root / "mymodels").mkdir(parents=True)
    (root / "mymodels" / "__init__.py").write_text("")
    (root / "mymodels" / "layers.py").write_text("def block(x):\n    return x\n")
    (root / "model.py").write_text("from mymodels.layers import block\n")
    (root / "tunecluster.yaml").write_text("name: demo\n")
    if requirements:
        (root / "requirements.txt").write_text("pyyaml\n")
    if pyproject:
        (root / "pyproject.toml").write_text(pyproject)
    for junk in (".git/config", "__pycache__/model.cpython-311.pyc", "tunecluster-runs/demo/spec.yaml",
                 ".venv/pyvenv.cfg", "env/pyvenv.cfg", ".tunecluster/image.json", "data/big.csv", "notes.tmp"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("x")
    (root / ".dockerignore").write_text("# data goes on the volume\ndata/\n*.tmp\n")
    return root


def test_the_project_is_read_from_its_folder_and_caches_and_ignored_files_stay_out(tmp_path):
    project = read_project(_project(tmp_path / "My Project"))
    assert (project.name, project.version) == ("my-project", __version__)  # no pyproject: folder, tunecluster's version
    assert project.requirements and not project.installable
    assert project.files == [".dockerignore", "model.py", "mymodels/__init__.py", "mymodels/layers.py",
                             "requirements.txt", "tunecluster.yaml"]
    with_pyproject = read_project(_project(tmp_path / "p2", '[project]\nname = "Pima_Models"\nversion = "0.3.0"\n'))
    assert (with_pyproject.name, with_pyproject.version, with_pyproject.installable) == ("pima_models", "0.3.0", True)
    assert image_name("--") == "project"


def test_a_project_too_big_for_an_image_is_one_line_naming_the_largest_files(tmp_path):
    root = _project(tmp_path / "p")
    (root / "huge.bin").write_bytes(b"\0" * 4096)
    with pytest.raises(UsageError, match=r"holds 0 MiB .*largest: huge.bin .*\.dockerignore .*tunecluster upload"):
        project_files(root, limit=1000)
    with pytest.raises(UsageError, match="does not exist"):
        read_project(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "pyproject.toml").write_text("[project\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        read_project(tmp_path / "bad")


def test_the_dockerfile_puts_the_project_on_the_tunecluster_image_as_the_non_root_user():
    base = Project(Path("/p"), "demo", "1.0", requirements=True, installable=True)
    text = dockerfile(base, "tunecluster:0.1.0", gpu=False)
    lines = text.splitlines()
    assert lines[1] == "FROM tunecluster:0.1.0" and lines[2] == "USER 0" and lines[-1] == "USER 10001:0"
    # requirements in a layer before the code, then the project installed, then a check that tunecluster still runs
    order = [lines.index(x) for x in ("COPY project/requirements.txt /project/requirements.txt",
                                       "RUN pip install --no-cache-dir -r /project/requirements.txt",
                                       "COPY --chown=10001:0 project/ /project/",
                                       "RUN pip install --no-cache-dir /project",
                                       "RUN tunecluster --version", "ENV PYTHONPATH=/project")]
    assert order == sorted(order)
    assert "and-cuda" not in text
    gpu = dockerfile(Project(Path("/p"), "demo", "1.0", requirements=False, installable=False), "b", gpu=True)
    assert 'tensorflow[and-cuda]==$(pip show tensorflow' in gpu
    assert "requirements.txt" not in gpu and "pip install --no-cache-dir /project" not in gpu


def test_the_build_context_holds_the_dockerfile_and_exactly_the_projects_files(tmp_path):
    project = read_project(_project(tmp_path / "p"))
    context = write_context(project, tmp_path / "ctx", TUNECLUSTER_IMAGE, gpu=False)
    made = sorted(p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file())
    assert made == ["Dockerfile"] + [f"project/{f}" for f in project.files]
    assert (context / "project" / "mymodels" / "layers.py").read_text().startswith("def block")
    assert f"FROM {TUNECLUSTER_IMAGE}" in (context / "Dockerfile").read_text()
    assert TUNECLUSTER_IMAGE == f"tunecluster:{__version__}"  # the Dockerfile's and README's build tag


@pytest.mark.parametrize("text, registry, repository, tag", [
    ("registry.example.com/ml/demo:0.3.0", "registry.example.com", "registry.example.com/ml/demo", "0.3.0"),
    ("127.0.0.1:5000/demo", "127.0.0.1:5000", "127.0.0.1:5000/demo", "9.9"),
    ("localhost/demo:v1", "localhost", "localhost/demo", "v1"),
    ("alice/demo", "docker.io", "alice/demo", "9.9"),
])
def test_push_references(text, registry, repository, tag):
    target = push_target(text, "9.9")
    assert (target.registry, target.repository, target.tag) == (registry, repository, tag)
    assert target.ref == f"{repository}:{tag}"


@pytest.mark.parametrize("text", ["reg.io/demo@sha256:abc", "reg.io/Demo:1", "reg.io/demo:bad tag", "", "reg.io/demo/"])
def test_bad_push_references_are_refused(text):
    with pytest.raises(UsageError, match="--push"):
        push_target(text, "1.0")


@pytest.mark.parametrize("output, line", [
    ("unauthorized: authentication required", "not logged in to reg.io:5000: run `docker login reg.io:5000`"),
    ("no basic auth credentials", "not logged in to reg.io:5000: run `docker login reg.io:5000`"),
    ("denied: requested access to the resource is denied", "reg.io:5000 refused the push of reg.io:5000/ml/demo"),
    ('Get "https://reg.io:5000/v2/": http: server gave HTTP response to HTTPS client', "answers plain HTTP"),
    ("tls: failed to verify certificate: x509: certificate signed by unknown authority",
     "/etc/docker/certs.d/reg.io:5000/ca.crt"),
    ("dial tcp 10.0.0.1:5000: connect: connection refused", "cannot reach the registry reg.io:5000"),
    ("something else\nblob upload unknown", "docker push reg.io:5000/ml/demo:1 failed: blob upload unknown"),
])
def test_a_refused_push_is_one_line_naming_the_registry_and_the_cause(output, line):
    error = push_error(output, push_target("reg.io:5000/ml/demo:1", "1"))
    assert isinstance(error, RunFailure) and error.exit_code == 1
    assert line in str(error) and "\n" not in str(error)


def test_the_record_up_reads(tmp_path):
    assert recorded_image(tmp_path, pushed=True) is None and recorded_image(None, pushed=False) is None
    write_record(tmp_path, {"local": "demo:1"})
    assert recorded_image(tmp_path, pushed=False) == "demo:1" and recorded_image(tmp_path, pushed=True) is None
    write_record(tmp_path, {"local": "demo:1", "reference": "reg.io/demo@sha256:" + "a" * 64})
    assert recorded_image(tmp_path, pushed=True) == "reg.io/demo@sha256:" + "a" * 64
