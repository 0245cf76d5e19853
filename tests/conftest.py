"""Shared helpers: run the real `tunecluster` CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tunecluster", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


# ---------------------------------------------------------------- Kubernetes test bed
# e2e/k8s/testbed.py starts a real single-node cluster (built from source by e2e/k8s/build.sh).
sys.path.insert(0, str(REPO / "e2e" / "k8s"))


@pytest.fixture(scope="session")
def k8s_cluster():
    """A running multi-node Kubernetes (TestBed, two nodes): `.kubectl(...)`, `.apply(...)`,
    `.import_image(tar)`, `.kubeconfig`, `.node_names`, `.stop_node(name)`/`.start_node(name)`. Started once per session, stopped and cleaned up at the end."""
    import testbed  # noqa: PLC0415 - only the e2e_kubernetes tests need it

    bin_dir = testbed.build()
    bed = testbed.TestBed(bin_dir)
    try:
        bed.start()
    except testbed.TestBedError as exc:
        pytest.fail(f"Kubernetes test bed did not come up: {exc}", pytrace=False)
    print(f"\n[k8s test bed] {bed.describe()}; up in {bed.timings['total']:.1f}s "
          f"({', '.join(f'{k} {v:.1f}s' for k, v in bed.timings.items() if k != 'total')}); dir {bed.dir}")
    for name in bed.node_names:  # each node's own mount of the shared (ReadWriteMany) filesystem
        print(f"[k8s test bed] {name}: {bed.node_mount(name)}")
    try:
        yield bed
    finally:
        bed.stop()


# ---------------------------------------------------------------- the unit tier's promise
UNIT = REPO / "tests" / "unit"


@pytest.fixture(autouse=True)
def _unit_tier_starts_no_process_and_trains_nothing(request, monkeypatch):
    """tests/unit answers in well under a minute because its tests start no process and train no
    model: hold them to it (a test that needs either belongs in tests/integration)."""
    if UNIT not in Path(request.node.path).parents:
        return

    def no_process(self, *args, **kwargs):
        raise AssertionError("a unit test started a process; move it to tests/integration")

    def no_training(self, *args, **kwargs):
        raise AssertionError("a unit test trained a model; move it to tests/integration")

    if "keras" in Path(request.node.path).read_text():  # (a test that never imports Keras pays nothing)
        import keras  # before Popen is refused: TensorFlow's first import runs `uname -p`

        monkeypatch.setattr(keras.Model, "fit", no_training)
    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
