"""Files off the shared volume: a short-lived helper pod mounts the volume read-only and the exec
API streams a tar of the asked-for paths back (`pull`): the best model, its hyperparameters and
metrics, the results, or just the final progress files."""

from __future__ import annotations

import base64
import io
import tarfile
import time
from pathlib import Path

from tunecluster.backends.kubernetes.apply import apply_objects
from tunecluster.backends.kubernetes.client import Cluster
from tunecluster.backends.kubernetes.pods import exec_read, pod_problem, watch_once
from tunecluster.backends.kubernetes.render import SHARED_MOUNT, helper_pod, selector
from tunecluster.core.archives import extract_tar
from tunecluster.core.errors import RunFailure
from tunecluster.tuning.spec import Experiment


PULL_SCRIPT = (
    "import base64,io,os,sys,tarfile\n"
    "buf=io.BytesIO()\n"
    "with tarfile.open(fileobj=buf,mode='w:gz') as tar:\n"
    "    for name in sys.argv[1:]:\n"
    "        path=os.path.join('" + SHARED_MOUNT + "',name)\n"
    "        if os.path.exists(path): tar.add(path,arcname=name)\n"
    "sys.stdout.write(base64.b64encode(buf.getvalue()).decode())\n"
)
PULLED = ("best", "results.json", "results.csv", "progress.json")


def pull(cluster: Cluster, spec: Experiment, to: Path, timeout: float = 180, require_model: bool = True,
         names: tuple = PULLED) -> list[str]:
    """Copy the best model, its hyperparameters and metrics, and the results (or just `names`) out
    of the volume through a short-lived pod (read-only mount) and the exec API (a tar stream)."""
    pod = helper_pod(spec, cluster.namespace)
    name = pod["metadata"]["name"]
    apply_objects(cluster, [pod])
    try:
        deadline = time.time() + timeout
        while True:
            current = cluster.core.read_namespaced_pod(name, cluster.namespace)
            problem = pod_problem(current)
            if problem:
                raise RunFailure(problem)
            if current.status.phase == "Running":
                break
            if time.time() > deadline:
                raise RunFailure(f"the helper pod {name} did not start within {timeout:.0f} s")
            watch_once(cluster, "pods", selector(spec.name, "pull"), 5)
        encoded = exec_read(cluster, name, ["python", "-c", PULL_SCRIPT, *names], timeout=300)
    finally:
        try:
            cluster.core.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)
        except Exception:
            pass
    return unpack_pulled(encoded, to, spec.name, require_model=require_model)


def unpack_pulled(encoded: str, to: Path, experiment: str, *, require_model: bool = True) -> list[str]:
    """Unpack the helper pod's answer (a base64 gzipped tar) into `to`; return its files."""
    data = base64.b64decode(encoded)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        names = archive.getnames()
    # metrics.json is the export's last file (after model.keras; a run_trial search has no model)
    if require_model and not any(n.startswith("best/metrics.json") for n in names):
        raise RunFailure(f"no exported best model or configuration on the volume of {experiment!r} yet (the "
                         "search has not finished or no trial completed)")
    return extract_tar(io.BytesIO(data), to, mode="r:gz")
