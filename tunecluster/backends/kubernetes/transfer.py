"""Files off the shared volume (`pull`): a short-lived helper pod (64 MiB, the volume read-only)
writes an uncompressed tar of the asked-for paths to its stdout; this machine reads the exec
stream chunk by chunk into a temporary file beside the target (never the whole tar in memory on
either side), compares the sha256 and byte count the pod computed with its own, and only then
unpacks (filtered: no paths out of the target)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Optional

from tunecluster.backends.kubernetes.client import Cluster
from tunecluster.backends.kubernetes.exec_stream import ExecStream
from tunecluster.backends.kubernetes.helper_pod import pod_command, running_helper
from tunecluster.backends.kubernetes.render import SHARED_MOUNT
from tunecluster.backends.transfer_progress import NoProgress, TransferProgress
from tunecluster.core.archives import extract_tar
from tunecluster.core.errors import RunFailure
from tunecluster.tuning.spec import Experiment

PULLED = ("best", "results.json", "results.csv", "progress.json")


class StreamedTar:
    """The tar arriving on stdout: written to `handle`, hashed and counted as it comes; the pod's
    own account (total file bytes first, then the tar's sha256 and size) read from stderr."""

    def __init__(self, handle, progress: TransferProgress, label: str):
        self.handle, self.progress, self.label = handle, progress, label
        self.digest, self.count = hashlib.sha256(), 0
        self.pending, self.reports = b"", []
        self.started = False

    def on_stdout(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.count += len(data)
        if not self.started:  # the stream began before the pod's first report
            self.progress.start(self.label, None)
            self.started = True
        self.progress.advance(len(data))

    def on_stderr(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            self.reports.append(report)
            if "total" in report and not self.started:
                self.progress.start(self.label, int(report["total"]))
                self.started = True

    def verify(self, pod: str) -> None:
        final = next((r for r in reversed(self.reports) if "sha256" in r), None)
        if final is None:
            raise RunFailure(f"the transfer pod {pod} sent no checksum: the stream was cut ({self.count} bytes "
                             "came); run pull again")
        if final["bytes"] != self.count or final["sha256"] != self.digest.hexdigest():
            raise RunFailure(f"the tar from pod {pod} was damaged on the way ({self.count} bytes, sha256 "
                             f"{self.digest.hexdigest()[:16]}..., the pod sent {final['bytes']} bytes, "
                             f"{final['sha256'][:16]}...); run pull again")


def pull(cluster: Cluster, spec: Experiment, to: Path, timeout: float = 600, require_model: bool = True,
         names: tuple = PULLED, progress: Optional[TransferProgress] = None) -> list[str]:
    """Copy the best model, its hyperparameters and metrics, and the results (or just `names`) out
    of the volume into `to`; return the files unpacked."""
    progress = progress or NoProgress()
    to.mkdir(parents=True, exist_ok=True)
    with running_helper(cluster, spec, timeout=timeout) as pod, \
            tempfile.TemporaryFile(dir=to, prefix=".pull-", suffix=".tar") as handle:
        tar = StreamedTar(handle, progress, f"pull {spec.name}")
        stream = ExecStream(cluster, pod, pod_command("send", SHARED_MOUNT, *names))
        try:
            result = stream.finish(on_stdout=tar.on_stdout, on_stderr=tar.on_stderr)
        finally:
            progress.finish()
        if result.code != 0:
            raise RunFailure(f"reading the volume in pod {pod} failed: {result.error_line()}")
        tar.verify(pod)
        handle.seek(0)
        return unpack_pulled(handle, to, spec.name, require_model=require_model)


def unpack_pulled(handle, to: Path, experiment: str, *, require_model: bool = True) -> list[str]:
    """Unpack the pulled tar (an open binary file) into `to`; return its files."""
    import tarfile

    start = handle.tell()
    with tarfile.open(fileobj=handle, mode="r:") as archive:
        names = archive.getnames()
    # metrics.json is the export's last file (after model.keras; a run_trial search has no model)
    if require_model and not any(n.startswith("best/metrics.json") for n in names):
        raise RunFailure(f"no exported best model or configuration on the volume of {experiment!r} yet (the "
                         "search has not finished or no trial completed)")
    handle.seek(start)
    return extract_tar(handle, to, mode="r:")
