"""`tunecluster build --push` end to end on a real Docker engine and a real registry (marker
`e2e_kubernetes`, beside the other registry tests: it needs dockerd and the registry that
e2e/k8s/build.sh builds; `python -m pytest -m e2e_kubernetes tests/e2e/test_image_build_push.py`).

A tiny user project (a package with two modules, a hypermodel file importing it, a
requirements.txt) is built on the tunecluster image and pushed to a CNCF distribution registry
started here on 127.0.0.1 (Docker pushes to 127.0.0.0/8 over plain HTTP): the recorded digest is
the one the registry serves, the image imports the project's modules as the non-root user, and a
push to a registry that does not answer is one line with exit code 1.

The registry binary: $TUNECLUSTER_REGISTRY_BIN, else the test bed's (`e2e/k8s/build.sh`, cached).
The authenticated push (TLS, htpasswd) is tested on the bed's own registry in
test_kubernetes_journey.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli
from test_compose import _run, docker_engine  # noqa: F401 - the Docker engine fixture (tests/e2e/test_compose.py)

pytestmark = [pytest.mark.e2e_kubernetes, pytest.mark.timeout(1800)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    import testbed  # noqa: PLC0415 - e2e/k8s, on sys.path through tests/conftest.py

    binary = os.environ.get("TUNECLUSTER_REGISTRY_BIN") or str(testbed.build(quiet=True) / "registry")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no registry binary at {binary}: run e2e/k8s/build.sh")
    port = _free_port()
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(root / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, (root / "registry.log").read_text()
            time.sleep(0.3)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def tunecluster_image(docker_engine):  # noqa: F811
    """An image with tunecluster: $TUNECLUSTER_E2E_IMAGE, else the compose suite's tunecluster:e2e."""
    name = os.environ.get("TUNECLUSTER_E2E_IMAGE", "tunecluster:e2e")
    if _run("docker", "image", "inspect", name, check=False).returncode != 0:
        pytest.fail(f"image {name} not found: run the compose suite once (it builds tunecluster:e2e) or set "
                    "TUNECLUSTER_E2E_IMAGE")
    return name


def _user_project(root: Path) -> Path:
    (root / "mymodels").mkdir(parents=True)
    (root / "mymodels" / "__init__.py").write_text("")
    (root / "mymodels" / "layers.py").write_text("def width(hp):\n    return hp.Int('units', 4, 8, step=4)\n")
    (root / "model.py").write_text(
        "import keras\nfrom mymodels.layers import width\n\n"
        "def build(hp):\n    m = keras.Sequential([keras.layers.Dense(width(hp), activation='relu'),\n"
        "                           keras.layers.Dense(1, activation='sigmoid')])\n"
        "    m.compile('adam', 'binary_crossentropy', metrics=['accuracy'])\n    return m\n")
    (root / "requirements.txt").write_text("pyyaml\n")  # already in the image: nothing is downloaded
    (root / "tunecluster.yaml").write_text("name: demo\nhypermodel: model.py:build\n")
    (root / "data").mkdir()
    (root / "data" / "big.csv").write_text("a,b\n" * 1000)
    (root / ".dockerignore").write_text("data/\n")
    return root


def test_build_push_records_the_digest_the_registry_serves(registry, tunecluster_image, tmp_path):
    project = _user_project(tmp_path / "demo-project")
    started = time.time()
    built = run_cli("build", str(project), "--from", tunecluster_image, "--push", f"{registry}/tc-e2e/demo",
                    "--tag", "tc-e2e-demo:local", cwd=tmp_path, timeout=1200)
    print(f"\n[e2e build] build --push took {time.time() - started:.0f} s", flush=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    record = json.loads((project / ".tunecluster" / "image.json").read_text())
    assert record["local"] == "tc-e2e-demo:local" and record["pushed"] == f"{registry}/tc-e2e/demo:0.1.0"
    assert record["reference"] == f"{registry}/tc-e2e/demo@{record['digest']}"
    assert record["digest"].startswith("sha256:") and len(record["digest"]) == 71
    # the registry serves that digest under the tag
    request = urllib.request.Request(f"http://{registry}/v2/tc-e2e/demo/manifests/0.1.0", method="HEAD", headers={
        "Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.docker.distribution.manifest.list.v2+json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.headers["Docker-Content-Digest"] == record["digest"]
    # the image runs the project's modules as the non-root user; the ignored data stayed out
    check = _run("docker", "run", "--rm", "--entrypoint", "python", record["reference"], "-c",
                 "import os, yaml, tunecluster, mymodels.layers, model; "
                 "print(os.getuid(), os.getcwd(), os.path.exists('/project/data'), tunecluster.__version__)")
    assert check.stdout.split() == ["10001", "/project", "False", "0.1.0"], check.stdout + check.stderr
    user = _run("docker", "image", "inspect", "-f", "{{.Config.User}}", "tc-e2e-demo:local").stdout.strip()
    assert user == "10001:0"


def test_a_registry_that_does_not_answer_is_one_line_and_exit_1(tunecluster_image, tmp_path):
    project = _user_project(tmp_path / "demo-project")
    closed = f"127.0.0.1:{_free_port()}"
    refused = run_cli("build", str(project), "--from", tunecluster_image, "--push", f"{closed}/tc-e2e/demo:1",
                      cwd=tmp_path, timeout=1200)
    assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot reach the registry {closed}" in errors[0], refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (project / ".tunecluster" / "image.json").exists()  # nothing recorded for a failed push
