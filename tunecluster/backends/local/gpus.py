"""This machine's GPUs, for `cluster.workers_per_gpu` on the local backend."""

from __future__ import annotations

import os
import subprocess

from tunecluster.core import env as role_env


def local_gpus(environ=os.environ) -> list[str]:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES entries: the launcher's own
    CUDA_VISIBLE_DEVICES if set, else the indices `nvidia-smi` lists, else none."""
    visible = environ.get(role_env.CUDA_DEVICES)
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()] if out.returncode == 0 else []
