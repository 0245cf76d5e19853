"""The ClusterPlan: the roles of one experiment (1 chief + N workers) with their environment,
port, shared folder, resources and secrets, decided here once and rendered by every backend.

A backend says where things are for its roles (`Placement`: the spec file and run folder as the
roles see them, the address the chief binds and the one workers dial, the oracle port, where the
token and TLS files are mounted); `build_plan` decides everything else the same way for all three:
Keras Tuner's switches (`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`),
tunecluster's variables (`core/env.py`), the token or `--insecure`, TLS, TensorFlow threads,
GPU sharing (`cluster.workers_per_gpu`) and each role's resources.

Example::

    >>> from tunecluster.tuning.spec import Experiment
    >>> plan = build_plan(Experiment(), Placement(spec_path="/in/spec.yaml", run_dir="/runs/x",
    ...     chief_bind="0.0.0.0", chief_host="chief", port=8000, secrets=SecretFiles("/s/token")))
    >>> [role.name for role in plan.roles]
    ['chief', 'worker-0', 'worker-1']
    >>> plan.workers[1].env["KERASTUNER_TUNER_ID"]
    'tuner1'
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from tunecluster.core import env as role_env
from tunecluster.tuning.spec import Experiment, Resources

DEFAULT_PORT = 8000  # the oracle port inside a compose network or a Kubernetes pod
RUN_AS_UID = 10001  # the image's non-root user (see the Dockerfile), for compose and Kubernetes
WORKER_ONLY = (role_env.TUNER_ID, role_env.CUDA_DEVICES)  # what differs between two workers


@dataclass(frozen=True)
class SecretFiles:
    """Where the roles find the oracle token and the TLS files (None: not used)."""

    token: Optional[str]  # None: no token (`cluster.insecure`)
    tls_cert: Optional[str] = None  # the chief's certificate; workers trust exactly this one
    tls_key: Optional[str] = None
    server_name: Optional[str] = None  # the name workers check in the certificate


@dataclass(frozen=True)
class Placement:
    """What one backend decides about where its roles run (see the module docstring)."""

    spec_path: str
    run_dir: str
    chief_bind: str  # what the chief listens on
    chief_host: str  # what workers dial: 127.0.0.1, a compose service, a Kubernetes Service
    port: int
    secrets: SecretFiles
    tf_threads: Optional[int] = None  # default intra-op threads per worker (cluster.tf_threads wins)
    gpus: Sequence[str] = ()  # this machine's GPUs: with workers_per_gpu each worker sees one
    extra_env: Mapping[str, str] = field(default_factory=dict)  # e.g. PYTHONPATH in containers


@dataclass(frozen=True)
class Role:
    name: str  # "chief", "worker-0", ...
    tuner_id: str  # Keras Tuner's KERASTUNER_TUNER_ID
    command: tuple[str, ...]  # tunecluster sub-command
    env: dict[str, str] = field(default_factory=dict)
    resources: Optional[Resources] = None  # cpu / memory / GPUs of the role's container (Kubernetes)

    @property
    def is_chief(self) -> bool:
        return self.tuner_id == "chief"


@dataclass(frozen=True)
class ClusterPlan:
    experiment: str
    port: int
    roles: tuple[Role, ...]
    placement: Placement

    @property
    def chief(self) -> Role:
        return self.roles[0]

    @property
    def workers(self) -> tuple[Role, ...]:
        return self.roles[1:]

    def shared_worker_env(self) -> dict[str, str]:
        """The environment every worker has (one pod template for all of them, an Indexed Job):
        a worker's own env without its tuner id and GPU."""
        return {k: v for k, v in self.workers[0].env.items() if k not in WORKER_ONLY}


def worker_id(index: int) -> str:
    return f"tuner{index}"


def worker_name(tuner_id: str) -> str:
    """`tuner3` -> `worker-3` (the role name backends use)."""
    return "chief" if tuner_id == "chief" else f"worker-{tuner_id.removeprefix('tuner')}"


def gpu_for_worker(index: int, gpus: Sequence[str], per_gpu: int) -> str:
    """The GPU worker `index` uses when `per_gpu` workers share each GPU: workers 0..k-1 the
    first, k..2k-1 the second, ...; more workers than GPUs x k wrap around."""
    return gpus[(index // per_gpu) % len(gpus)]


def default_tf_threads(workers: int, cores: Optional[int] = None) -> int:
    """Workers on one machine share its cores: cores / workers intra-op threads each."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


def threads_for_cpu(cpu: Optional[str]) -> Optional[int]:
    """Intra-op threads for a container limited to `cpu` (a Kubernetes quantity: "2", "1500m")."""
    if not cpu:
        return None
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.floor(value))


def security_env(spec: Experiment, secrets: SecretFiles, *, chief: bool) -> dict[str, str]:
    """The token (or --insecure) and TLS variables of one role."""
    env: dict[str, str] = {}
    if spec.cluster.insecure:
        env[role_env.INSECURE] = "1"
    elif secrets.token:
        env[role_env.TOKEN_FILE] = secrets.token
    if spec.cluster.tls:
        if chief:
            env[role_env.TLS_CERT] = secrets.tls_cert or ""
            env[role_env.TLS_KEY] = secrets.tls_key or ""
        else:
            env[role_env.TLS_CA] = secrets.tls_cert or ""
            if secrets.server_name:
                env[role_env.TLS_SERVER_NAME] = secrets.server_name
    return env


def role_commands(script: Sequence[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The chief's and the workers' `tunecluster` sub-commands: `chief`/`worker`, or for
    `up --script` the same `script PATH ARGS...` in every role (`tunecluster.script`)."""
    if script:
        return ("script", *script), ("script", *script)
    return ("chief",), ("worker",)


def build_plan(spec: Experiment, where: Placement, script: Sequence[str] = ()) -> ClusterPlan:
    """Every role of the experiment and its environment (see the module docstring); `script`:
    the Keras Tuner script (and its arguments) every role runs instead of `chief`/`worker`."""
    chief_command, worker_command = role_commands(script)
    common = {
        **where.extra_env,
        role_env.ORACLE_PORT: str(where.port),
        role_env.SPEC: where.spec_path,
        role_env.RUN_DIR: where.run_dir,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    resources = spec.cluster.kubernetes
    chief = Role("chief", "chief", chief_command,
                 {**common, **security_env(spec, where.secrets, chief=True),
                  role_env.TUNER_ID: "chief", role_env.ORACLE_IP: where.chief_bind},
                 resources=resources.chief)
    threads = spec.cluster.tf_threads or where.tf_threads
    per_gpu = spec.cluster.workers_per_gpu
    workers = []
    for i in range(spec.cluster.workers):
        env = {**common, **security_env(spec, where.secrets, chief=False),
               role_env.TUNER_ID: worker_id(i), role_env.ORACLE_IP: where.chief_host}
        if threads:
            env[role_env.TF_THREADS] = str(threads)
        if per_gpu:
            env[role_env.GPU_MEMORY_GROWTH] = "1"  # several workers share one GPU's memory
            if where.gpus:
                env[role_env.CUDA_DEVICES] = gpu_for_worker(i, where.gpus, per_gpu)
        workers.append(Role(f"worker-{i}", worker_id(i), worker_command, env, resources=resources.worker))
    return ClusterPlan(spec.name, where.port, (chief, *workers), where)
