"""One answer to `tunecluster status` for every backend (`--format json` prints `to_json()`).

    {"run_dir", "backend", "experiment", "chief_address",
     "where":  {backend-specific facts: "namespace", "project", "launcher_pid", ...},
     "roles":  [{"name", "tuner_id", "state", "exit_code", "restarts", "given_up",
                 "pid", "host", "instance", "problem"}, ...],
     "finished", "counts", "best"}

`state` is running, exited (code 0) or failed for every backend; besides, a local role recorded as
running whose process is no longer there is `gone`, a compose container keeps Docker's own states
(created, restarting, paused, dead, removed) and a Kubernetes pod its phase (pending, unknown);
`instance` names the container (compose) or pod (Kubernetes) of the role, `pid`
its process on this machine (local), `host` the node it runs on (Kubernetes), `problem` a state
the user must act on (an image that cannot be pulled, a pod that cannot be scheduled).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from tunecluster.core.rundir import RunDir, read_json


@dataclass
class RoleStatus:
    name: str
    tuner_id: str
    state: str
    exit_code: Optional[int] = None
    restarts: int = 0
    given_up: bool = False
    pid: Optional[int] = None
    host: Optional[str] = None
    instance: Optional[str] = None
    problem: Optional[str] = None


@dataclass
class ClusterStatus:
    run_dir: str
    backend: str
    experiment: Optional[str]
    chief_address: Optional[str]
    roles: list[RoleStatus]
    where: dict = field(default_factory=dict)
    finished: bool = False
    counts: Optional[dict] = None
    best: Optional[dict] = None
    progress: dict = field(default_factory=dict)  # progress.json (workers' trial and epoch); not in JSON

    @classmethod
    def of(cls, run: RunDir, backend: str, roles: list[RoleStatus], *, experiment: Optional[str] = None,
           chief_address: Optional[str] = None, where: Optional[dict] = None) -> "ClusterStatus":
        """The status of `run` with its progress read from the run folder's progress.json."""
        progress = read_json(run.progress) or {}
        return cls(str(run.root), backend, experiment or progress.get("experiment"),
                   chief_address or progress.get("chief_address"), roles, where or {},
                   bool(progress.get("finished", False)), progress.get("counts"), progress.get("best"), progress)

    def to_json(self) -> dict:
        document = asdict(self)
        document.pop("progress")
        return document
