"""Moving data on and off an experiment's volume on the real test bed (e2e/k8s): `tunecluster
upload` of a 50 MB CSV before `up` (the claim made from the spec), skipped when already there,
continued from a partial file; a 3 GB file refused up front with nothing made; the pod-side
data.csv checked in the cluster (`up` refuses a missing one before writing anything); `pull` of
a 400 MB model through the 64 MiB helper pod, checksums compared end to end, and the client's
memory. The helper pods run the small Debian base image of the compose tests (only python3 is
needed), so no project image is built. Run as root with `python -m pytest -m e2e_kubernetes -s`."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

pytestmark = [pytest.mark.e2e_kubernetes, pytest.mark.timeout(1800)]

NS = "tc-xfer"
NAME = "xfer"
# the pod's anonymous memory (v2 anon, v1 rss) and its usage with page cache (v2 current, v1 peak)
CGROUP_MEMORY = ("cat /sys/fs/cgroup/memory.stat /sys/fs/cgroup/memory.current /sys/fs/cgroup/memory/memory.stat "
                 "/sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null")
BASE = os.environ.get("TUNECLUSTER_BASE_IMAGE", "tunecluster-base:bookworm")
PUSHED = ""  # BASE in the bed's registry (set by the `bed` fixture)


@pytest.fixture(scope="module")
def bed(k8s_cluster):
    started = time.time()
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode != 0:
        pytest.fail(f"the base image {BASE} is not in Docker (tests/e2e/test_compose.py builds it)")
    global PUSHED
    PUSHED = k8s_cluster.push_docker_image(BASE, "tunecluster/base")  # the nodes pull it from the registry
    print(f"\n[xfer] pushed {BASE} as {PUSHED} in {time.time() - started:.0f} s", flush=True)
    k8s_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    k8s_cluster.pull_secret(NS, default_service_account=True)
    return k8s_cluster


def _cli(bed, *args, cwd, timeout=900):
    return run_cli(*args, cwd=cwd, timeout=timeout, env={"KUBECONFIG": str(bed.kubeconfig), "COLUMNS": "200"})


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _spec(tmp_path: Path, csv: str, target: str = "Outcome") -> Path:
    spec = {"name": NAME, "hypermodel": "tunecluster.tuning.examples.pima:build_units",
            "data": {"csv": csv, "target": target}, "tuner": {"max_trials": 2},
            "cluster": {"backend": "kubernetes", "workers": 1, "kubernetes": {
                "namespace": NS, "image": PUSHED, "image_pull_policy": "IfNotPresent", "storage_size": "1Gi"}}}
    path = tmp_path / "tunecluster.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _csv(path: Path, megabytes: int) -> Path:
    rng = random.Random(7)
    rows = ["a,b,c,d,Outcome\n"]
    size = len(rows[0])
    while size < megabytes * 1_000_000:
        row = ",".join(f"{rng.random():.6f}" for _ in range(4)) + f",{rng.randint(0, 1)}\n"
        rows.append(row)
        size += len(row)
    path.write_text("".join(rows))
    return path


def _claims(bed) -> list[str]:
    return [c["metadata"]["name"] for c in bed.kubectl_json("get", "pvc", "-n", NS)["items"]]


def _transfer_pods(bed) -> list[dict]:
    return bed.kubectl_json("get", "pods", "-n", NS, "-l", "tunecluster.io/role=transfer")["items"]


def test_upload_check_and_pull(bed, tmp_path):
    timings = {}
    spec = _spec(tmp_path, "/shared/data/train.csv")

    # 1. too big for the claim the spec asks for: one line, exit 2, nothing made
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as handle:
        handle.truncate(3 * 1024**3)  # sparse: 3 GiB on paper
    done = _cli(bed, "upload", str(huge), "-f", str(spec), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "3.0 GiB" in done.stderr and "1.0 GiB" in done.stderr, done.stderr
    assert _claims(bed) == [] and _transfer_pods(bed) == []
    huge.unlink()

    # 2. `up` refuses a pod-side data.csv that is not on the volume, before writing anything
    done = _cli(bed, "up", "-f", str(spec), "--dir", "run", "--detach", cwd=tmp_path)
    assert done.returncode == 2 and "upload the file first" in done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "run").exists() and _claims(bed) == []

    # 3. the 50 MB CSV before `up`: the claim is made from the spec, the file lands checksummed
    csv = _csv(tmp_path / "train.csv", 50)
    started = time.time()
    done = _cli(bed, "upload", str(csv), "-f", str(spec), cwd=tmp_path)
    timings["upload 50 MB"] = time.time() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "data.csv: /shared/data/train.csv" in done.stdout, done.stdout
    assert _claims(bed) == [f"{NAME}-shared"] and _transfer_pods(bed) == []
    volume = bed.volume_path(f"{NAME}-shared", NS)
    assert _sha(volume / "data" / "train.csv") == _sha(csv)
    print(f"[xfer] {done.stdout.strip()}", flush=True)

    # 4. again: skipped (same sha256)
    done = _cli(bed, "upload", str(csv), "-f", str(spec), cwd=tmp_path)
    assert done.returncode == 0 and "skipped" in done.stdout, done.stdout + done.stderr

    # 5. an experiment named before `up` has no ConfigMap to read its spec from: one line
    done = _cli(bed, "upload", str(csv), "--name", NAME, "-n", NS, cwd=tmp_path)
    assert done.returncode == 2 and "before `up`" in done.stderr, done.stderr

    # 6. the data check in the cluster: the uploaded file passes, a missing column fails in one line
    from tunecluster.backends.kubernetes.client import connect
    from tunecluster.backends.kubernetes.data_check import check_pod_data
    from tunecluster.core.errors import UsageError
    from tunecluster.tuning.spec import load_spec

    cluster = connect(kubeconfig=str(bed.kubeconfig), namespace=NS)
    started = time.time()
    check_pod_data(cluster, load_spec(spec))
    timings["data check"] = time.time() - started
    with pytest.raises(UsageError, match="column 'Label' is not in the header"):
        check_pod_data(cluster, load_spec(_spec(tmp_path, "/shared/data/train.csv", target="Label")))
    assert _transfer_pods(bed) == []

    # 7. a 400 MB model, interrupted with Ctrl-C part way: the next upload continues the .part
    best = tmp_path / "best"
    best.mkdir()
    model = best / "model.keras"
    with open(model, "wb") as handle:
        for _ in range(400):
            handle.write(os.urandom(1_000_000))
    (best / "metrics.json").write_text(json.dumps({"score": 0.5}))
    (best / "hyperparameters.json").write_text(json.dumps({"units": 8}))
    part = volume / "best" / "model.keras.part"
    client = subprocess.Popen([sys.executable, "-m", "tunecluster", "upload", str(model), "-f", str(spec), "--to", "best"],
                              cwd=tmp_path, env={**os.environ, "KUBECONFIG": str(bed.kubeconfig)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as at a terminal
    deadline = time.time() + 300
    while not (part.exists() and part.stat().st_size > 100_000_000) and time.time() < deadline and client.poll() is None:
        time.sleep(0.1)
    client.send_signal(signal.SIGINT)
    output = client.communicate(timeout=120)[0]
    assert client.returncode != 0, output
    kept = part.stat().st_size
    assert 0 < kept < model.stat().st_size, (kept, output)
    bed.wait_for("the interrupted upload's pod gone", lambda: _transfer_pods(bed) == [], 60)
    started = time.time()
    done = _cli(bed, "upload", str(model), str(best / "metrics.json"), str(best / "hyperparameters.json"),
                "-f", str(spec), "--to", "best", cwd=tmp_path)
    timings["upload 400 MB (resumed)"] = time.time() - started
    assert done.returncode == 0 and "resumed at" in done.stdout, done.stdout + done.stderr
    print(f"[xfer] interrupted at {kept / 2**20:.1f} MiB; {done.stdout.strip()}", flush=True)
    assert _sha(volume / "best" / "model.keras") == _sha(model) and not part.exists()

    # 8. pull: the model and its metrics through the 64 MiB helper pod
    run = tmp_path / "run"  # the run folder `up` would have written (spec.yaml + cluster.json)
    run.mkdir()
    (run / "spec.yaml").write_text(spec.read_text())
    (run / "cluster.json").write_text(json.dumps({"backend": "kubernetes", "experiment": NAME, "namespace": NS}))
    limits, memory = [], {"anon": 0, "current": 0}

    def watch_pod():  # the helper pod's memory limit, and its memory while the pull runs
        deadline = time.time() + 300
        seen = None
        while time.time() < deadline:
            pods = _transfer_pods(bed)
            if not pods and seen:
                return
            for pod in pods:
                seen = pod["metadata"]["name"]
                limits.append(pod["spec"]["containers"][0]["resources"]["limits"]["memory"])
                stat = bed.kubectl("exec", "-n", NS, seen, "--", "sh", "-c", CGROUP_MEMORY, check=False).stdout
                for line in stat.split("\n"):
                    if line.startswith(("anon ", "rss ")):
                        memory["anon"] = max(memory["anon"], int(line.split()[1]))
                    elif line.strip().isdigit():
                        memory["current"] = max(memory["current"], int(line))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch_pod, daemon=True)
    watcher.start()
    started = time.time()
    measured = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
                "print('peak-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
                "sys.exit(done.returncode)")  # a fresh parent: only the pull's own peak counts
    done = subprocess.run([sys.executable, "-c", measured, sys.executable, "-m", "tunecluster", "pull", "--dir", "run",
                           "--to", "out"], cwd=tmp_path, env={**os.environ, "KUBECONFIG": str(bed.kubeconfig)},
                          capture_output=True, text=True, timeout=900)
    timings["pull 400 MB"] = time.time() - started
    peak_mib = int(done.stderr.split("peak-kib")[-1].split()[0]) / 1024
    watcher.join(30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "copied 3 files" in done.stdout, done.stdout
    assert _sha(tmp_path / "out" / "model.keras") == _sha(model)
    assert limits and set(limits) == {"64Mi"}, limits
    assert _transfer_pods(bed) == []
    print(f"[xfer] pull: client peak RSS {peak_mib:.0f} MiB; helper pod anon memory max {memory['anon'] / 2**20:.1f} "
          f"MiB, usage with page cache max {memory['current'] / 2**20:.1f} MiB", flush=True)
    assert 0 < memory["anon"] < 64 * 2**20, memory
    assert peak_mib < 150, f"the pull client peaked at {peak_mib:.0f} MiB for a 400 MB model"

    # 9. down removes the claim and everything else with the label
    done = _cli(bed, "down", "--dir", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    bed.wait_for("the claim gone", lambda: _claims(bed) == [], 60)
    print("[xfer] timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()), flush=True)
