"""The ClusterPlan: the roles of one experiment (1 chief + N workers) with their environment,
decided once and rendered by each backend (local processes today; compose and Kubernetes use the
same roles and variables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from tunecluster.core import env as role_env
from tunecluster.tuning.spec import Experiment


@dataclass(frozen=True)
class Role:
    name: str  # "chief", "worker-0", ...
    tuner_id: str  # Keras Tuner's KERASTUNER_TUNER_ID
    command: tuple[str, ...]  # tunecluster sub-command
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_chief(self) -> bool:
        return self.tuner_id == "chief"


@dataclass(frozen=True)
class ClusterPlan:
    experiment: str
    port: int
    roles: tuple[Role, ...]

    @property
    def chief(self) -> Role:
        return self.roles[0]

    @property
    def workers(self) -> tuple[Role, ...]:
        return self.roles[1:]


def worker_id(index: int) -> str:
    return f"tuner{index}"


def gpu_for_worker(index: int, gpus: Sequence[str], per_gpu: int) -> str:
    """The GPU worker `index` uses when `per_gpu` workers share each GPU: workers 0..k-1 the
    first, k..2k-1 the second, ...; more workers than GPUs x k wrap around."""
    return gpus[(index // per_gpu) % len(gpus)]


def build_plan(spec: Experiment, *, spec_path: str, run_dir: str, chief_bind: str,
               chief_host: str, port: int, tf_threads: int | None = None,
               chief_env: dict[str, str] | None = None, worker_env: dict[str, str] | None = None,
               gpus: Sequence[str] | None = None) -> ClusterPlan:
    """Roles and their variables. `chief_bind` is what the chief listens on, `chief_host` what
    workers dial (the same on one machine; a Service or container name elsewhere);
    `chief_env`/`worker_env` add the token and TLS variables (see `security.RunSecrets`).
    With `cluster.workers_per_gpu`, workers allocate GPU memory as they need it (so several share
    one GPU), and given the machine's `gpus` (local backend) each worker sees only its own."""
    common = {
        role_env.ORACLE_PORT: str(port),
        role_env.SPEC: spec_path,
        role_env.RUN_DIR: run_dir,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    chief = Role("chief", "chief", ("chief",),
                 {**common, **(chief_env or {}), role_env.TUNER_ID: "chief", role_env.ORACLE_IP: chief_bind})
    workers = []
    for i in range(spec.cluster.workers):
        env = {**common, **(worker_env or {}), role_env.TUNER_ID: worker_id(i), role_env.ORACLE_IP: chief_host}
        threads = spec.cluster.tf_threads or tf_threads
        if threads:
            env[role_env.TF_THREADS] = str(threads)
        per_gpu = spec.cluster.workers_per_gpu
        if per_gpu:
            env.setdefault(role_env.GPU_MEMORY_GROWTH, "1")
            if gpus:
                env[role_env.CUDA_DEVICES] = gpu_for_worker(i, gpus, per_gpu)
        workers.append(Role(f"worker-{i}", worker_id(i), ("worker",), env))
    return ClusterPlan(spec.name, port, (chief, *workers))
