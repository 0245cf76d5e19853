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
    """A running single-node Kubernetes (TestBed): `.kubectl(...)`, `.apply(...)`, `.import_image(tar)`,
    `.kubeconfig`, `.node_name`. Started once per session, stopped and cleaned up at the end."""
    import testbed  # noqa: PLC0415 - only the e2e_kubernetes tests need it

    bin_dir = testbed.build()
    bed = testbed.TestBed(bin_dir)
    try:
        bed.start()
    except testbed.TestBedError as exc:
        pytest.fail(f"Kubernetes test bed did not come up: {exc}", pytrace=False)
    print(f"\n[k8s test bed] {bed.describe()}; up in {bed.timings['total']:.1f}s "
          f"({', '.join(f'{k} {v:.1f}s' for k, v in bed.timings.items() if k != 'total')}); dir {bed.dir}")
    try:
        yield bed
    finally:
        bed.stop()
