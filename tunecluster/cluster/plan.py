"""The ClusterPlan: the roles of one experiment (1 chief + N workers) with their environment,
decided once and rendered by each backend (local processes today; compose and Kubernetes use the
same roles and variables).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunecluster.cluster import env as role_env
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


def build_plan(spec: Experiment, *, spec_path: str, run_dir: str, chief_bind: str,
               chief_host: str, port: int, tf_threads: int | None = None,
               chief_env: dict[str, str] | None = None, worker_env: dict[str, str] | None = None) -> ClusterPlan:
    """Roles and their variables. `chief_bind` is what the chief listens on, `chief_host` what
    workers dial (the same on one machine; a Service or container name elsewhere);
    `chief_env`/`worker_env` add the token and TLS variables (see `security.RunSecrets`)."""
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
        workers.append(Role(f"worker-{i}", worker_id(i), ("worker",), env))
    return ClusterPlan(spec.name, port, (chief, *workers))
