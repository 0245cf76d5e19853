"""The environment contract of every role: Keras Tuner's own switches plus tunecluster's.

Roles are configured only through these variables (and the spec file they name), so the local,
compose and Kubernetes backends differ only in how they set them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

TUNER_ID = "KERASTUNER_TUNER_ID"  # "chief" or "tuner<i>"
ORACLE_IP = "KERASTUNER_ORACLE_IP"  # chief: address to bind; workers: address to reach
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
SPEC = "TUNECLUSTER_SPEC"  # path to the spec file every role reads
RUN_DIR = "TUNECLUSTER_RUN_DIR"  # the shared run directory
TF_THREADS = "TUNECLUSTER_TF_THREADS"  # TensorFlow intra-op threads for a worker
STRATEGY = "TUNECLUSTER_STRATEGY"  # overrides cluster.strategy
LOGICAL_CPUS = "TUNECLUSTER_LOGICAL_CPUS"  # split the CPU into N logical devices (tests)
GPU_MEMORY_GROWTH = "TUNECLUSTER_GPU_MEMORY_GROWTH"  # "1": allocate GPU memory as needed (shared GPUs)
GPU_MEMORY_MB = "TUNECLUSTER_GPU_MEMORY_MB"  # a hard per-process GPU memory limit (MiB)
CUDA_DEVICES = "CUDA_VISIBLE_DEVICES"  # which GPU(s) a worker sees
JOB_INDEX = "JOB_COMPLETION_INDEX"  # set by Kubernetes in an Indexed Job's pods: tuner<index>
TOKEN = "TUNECLUSTER_TOKEN"  # the oracle token itself (prefer TOKEN_FILE)
TOKEN_FILE = "TUNECLUSTER_TOKEN_FILE"  # a file holding the token (a mounted secret)
INSECURE = "TUNECLUSTER_INSECURE"  # "1": no token on the oracle port (stock Keras Tuner workers)
TLS_CERT = "TUNECLUSTER_TLS_CERT"  # chief: PEM certificate to serve
TLS_KEY = "TUNECLUSTER_TLS_KEY"  # chief: its PEM private key
TLS_CA = "TUNECLUSTER_TLS_CA"  # workers/CLI: PEM certificate(s) to trust for the chief
TLS_SERVER_NAME = "TUNECLUSTER_TLS_SERVER_NAME"  # workers: name to check in the chief's certificate
WORKERS_PER_POD = "TUNECLUSTER_WORKERS_PER_POD"  # Kubernetes workers_per_gpu: worker processes in one pod
WORKERS = "TUNECLUSTER_WORKERS"  # ... and how many workers the experiment has in all
POD_GPUS = "TUNECLUSTER_POD_GPUS"  # ... and the GPUs of the pod they share
CODE_SHA256 = "TUNECLUSTER_CODE_SHA256"  # Kubernetes: the digest of the carried project (init container)
WORKER_INDEX = "TUNECLUSTER_INDEX"  # Kubernetes: a worker pod's completion index (its tuner id's number)
ALLOW_UNTESTED = "TUNECLUSTER_ALLOW_UNTESTED_VERSIONS"  # "1": untested keras-tuner/keras/tensorflow only warn
COMPOSE_TOOL = "TUNECLUSTER_COMPOSE"  # the CLI: force "docker compose" or "docker-compose"


@dataclass(frozen=True)
class RoleEnv:
    """What a role learns from its environment."""

    tuner_id: str
    oracle_ip: str
    oracle_port: int
    spec_path: Optional[str]
    run_dir: Optional[str]

    @property
    def is_chief(self) -> bool:
        return "chief" in self.tuner_id  # Keras Tuner's own rule

    @property
    def address(self) -> str:
        return f"{self.oracle_ip}:{self.oracle_port}"


def read_role_env(environ: Mapping[str, str] = os.environ, default_id: str = "tuner0") -> RoleEnv:
    """Read the role's variables; raise UsageError naming the one that is missing or wrong."""
    from tunecluster.core.errors import UsageError

    missing = [name for name in (ORACLE_IP, ORACLE_PORT) if not environ.get(name)]
    if missing:
        raise UsageError(
            f"{', '.join(missing)} not set; a role needs {ORACLE_IP} and {ORACLE_PORT} "
            f"(and {TUNER_ID}), or start the whole cluster with `tunecluster up`"
        )
    try:
        port = int(environ[ORACLE_PORT])
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise UsageError(f"{ORACLE_PORT}={environ[ORACLE_PORT]!r} is not a port number (1-65535)") from None
    tuner_id = environ.get(TUNER_ID)
    if not tuner_id and environ.get(JOB_INDEX, "").isdigit():
        tuner_id = f"tuner{int(environ[JOB_INDEX])}"  # a pod of an Indexed Job
    return RoleEnv(
        tuner_id=tuner_id or default_id,
        oracle_ip=environ[ORACLE_IP],
        oracle_port=port,
        spec_path=environ.get(SPEC),
        run_dir=environ.get(RUN_DIR),
    )
