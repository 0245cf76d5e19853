"""The data a Kubernetes spec names by a path in the pods (`data.csv: /shared/data/train.csv`, on
the volume after `tunecluster upload`, or a file in the image), checked inside the cluster before
`up` writes or applies anything: the file exists, is readable, and its header has the target
column (only the first line is read). A path on this machine is checked locally instead
(`tuning/preflight.py`) and travels in the ConfigMap."""

from __future__ import annotations

from pathlib import Path

from tunecluster.backends.kubernetes.client import Cluster
from tunecluster.backends.kubernetes.exec_stream import run_command
from tunecluster.backends.kubernetes.helper_pod import pod_command, running_helper
from tunecluster.backends.kubernetes.render import SHARED_MOUNT, Names
from tunecluster.backends.kubernetes.upload import read_claim
from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment


def pod_side_csv(spec: Experiment) -> bool:
    """True when data.csv is not a file on this machine, so it must be one in the pods."""
    return bool(spec.data.csv) and not Path(spec.data.csv).is_file()


def check_pod_data(cluster: Cluster, spec: Experiment) -> None:
    """One line (exit 2) when the pods could not read data.csv; nothing is left behind."""
    if not pod_side_csv(spec):
        return
    csv = spec.data.csv
    claim = spec.cluster.kubernetes.existing_claim or Names(spec.name).claim
    on_volume = csv.startswith(SHARED_MOUNT + "/")
    has_claim = read_claim(cluster, claim) is not None
    if on_volume and not has_claim:
        raise UsageError(f"data.csv: {csv} is on the experiment's volume, but its claim {claim} does not exist yet "
                         f"in namespace {cluster.namespace}; upload the file first: `tunecluster upload FILE -f SPEC "
                         f"--to {Path(csv).parent.as_posix()}`")
    with running_helper(cluster, spec, volume=has_claim) as pod:
        result = run_command(cluster, pod, pod_command("check", csv, spec.data.target), timeout=120)
    if result.code != 0:
        raise UsageError(f"data.csv: {result.error_line()}; it is not on this machine either, so the pods must have "
                         f"it: put it on the volume with `tunecluster upload FILE --to DIR` (then data.csv: "
                         f"{SHARED_MOUNT}/DIR/FILE) or bake it into the image")
