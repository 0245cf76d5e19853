"""The compose rendering: one experiment as a docker compose file (pure functions, no Docker).

The file holds a `chief` service and one service per worker (`worker-0`, ... with the stable
Keras Tuner ids `tuner0`, ...), all running the same image with the role as its command and the
environment of the ClusterPlan (`cluster.plan`): the chief binds 0.0.0.0, workers dial the service
name `chief`. Around them:

- one named volume (`runs`) mounted at /tunecluster/runs in every service; the run directory is
  /tunecluster/runs/<experiment> (TUNECLUSTER_RUN_DIR);
- the inputs (the spec with paths rewritten for the containers, the CSV, a model or loader file)
  bind-mounted read-only at /tunecluster/input from `<run dir>/input` on the host;
- the oracle token as a compose secret read from `<run dir>/secrets/token` (mode 0600, never in
  the image; `cluster.run_secrets`), named by TUNECLUSTER_TOKEN_FILE in every service;
- `restart: on-failure` for workers (same container, same KERASTUNER_TUNER_ID: the oracle hands a
  restarted worker its own trial back), `init: true` so SIGTERM reaches the role, optional GPU
  reservations, and the chief's port published on 127.0.0.1 only when asked for.

The file uses the Compose Specification without a `version:` key, which both `docker compose`
(v2) and `docker-compose` (v1 >= 1.27) read.

Example::

    >>> from tunecluster.tuning.examples import example_spec
    >>> doc = render_compose(example_spec("pima-optimizer"), ComposeOptions(run_root="/tmp/run"))
    >>> sorted(doc["services"])
    ['chief', 'worker-0', 'worker-1']
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional, Union

import yaml

from tunecluster import __version__
from tunecluster.backends.script_carry import script_in_containers
from tunecluster.cluster.plan import DEFAULT_PORT, RUN_AS_UID, ClusterPlan, Placement, SecretFiles, build_plan
from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment

DEFAULT_IMAGE = f"tunecluster:{__version__}"
IMAGE_UID = RUN_AS_UID  # the image's non-root user (group 0 owns its writable folders)
CONTAINER_PORT = DEFAULT_PORT  # the oracle port inside the project network
RUNS = PurePosixPath("/tunecluster/runs")  # where the named volume is mounted
INPUT = PurePosixPath("/tunecluster/input")  # where <run dir>/input is mounted read-only
TOKEN_SECRET = "tunecluster_token"
TOKEN_PATH = f"/run/secrets/{TOKEN_SECRET}"
VOLUME = "runs"
COMPOSE_FILE = "docker-compose.yml"
INPUT_DIR = "input"


@dataclass(frozen=True)
class ComposeOptions:
    """What the compose file needs beyond the spec.

    `run_root` is the run directory on the host (it holds the compose file, `token` and
    `input/`); `port` publishes the oracle on 127.0.0.1:port (None: not published); `gpus` reserves
    that many GPUs per worker ("all" for every GPU); `user` overrides the image's user ("uid:gid").
    """

    run_root: Union[str, Path]
    image: str = DEFAULT_IMAGE
    port: Optional[int] = None
    gpus: Optional[Union[int, str]] = None
    user: Optional[str] = None
    tf_threads: Optional[int] = None
    script: tuple[str, ...] = ()  # `up --script`: the script (host path) and its arguments, run from input/code


def project_name(experiment: str, run_root: Union[str, Path]) -> str:
    """The compose project of one run: the experiment's name and a short hash of the run
    directory, so two runs of one experiment in different folders never share containers."""
    digest = hashlib.sha256(str(Path(run_root).resolve()).encode()).hexdigest()[:6]
    return f"tc-{experiment}-{digest}"


def run_dir_in_container(experiment: str) -> str:
    return str(RUNS / experiment)


def container_user() -> Optional[str]:
    """None (the image's user) when we run as root and can hand the token file to that user;
    otherwise our own uid with group 0, so the container can read the 0600 token file we own
    (the image's folders are group-0 writable)."""
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        return None
    return f"{os.getuid()}:0"


# --- the compose document -------------------------------------------------------------------
def _gpu_reservation(gpus: Union[int, str]) -> dict:
    device = {"driver": "nvidia", "capabilities": ["gpu"], "count": "all" if gpus == "all" else int(gpus)}
    return {"resources": {"reservations": {"devices": [device]}}}


def compose_plan(spec: Experiment, options: ComposeOptions) -> ClusterPlan:
    """The ClusterPlan inside a compose project: inputs mounted at /tunecluster/input, the run
    folder on the named volume, the chief reached as the service `chief`."""
    if spec.cluster.tls:
        raise UsageError("cluster.tls (--tls) is not supported by the compose backend yet; the services "
                         "talk over the project's private network (use the local or kubernetes backend for TLS)")
    return build_plan(spec, Placement(
        spec_path=str(INPUT / "spec.yaml"), run_dir=run_dir_in_container(spec.name), chief_bind="0.0.0.0",
        chief_host="chief", port=options.port or CONTAINER_PORT, secrets=SecretFiles(token=TOKEN_PATH),
        tf_threads=options.tf_threads, extra_env={"PYTHONPATH": str(INPUT / "code")}),
        script=script_in_containers(options.script, str(INPUT / "code")).command if options.script else ())


def render_compose(spec: Experiment, options: ComposeOptions) -> dict:
    """The compose file of one experiment as plain data (dump it with `compose_yaml`)."""
    root = Path(options.run_root).resolve()
    plan = compose_plan(spec, options)
    port = plan.port
    mounts = [f"{VOLUME}:{RUNS}", f"{root / INPUT_DIR}:{INPUT}:ro"]
    services = {}
    for role in plan.roles:
        service: dict = {
            "image": options.image,
            "command": list(role.command),
            "environment": dict(sorted(role.env.items())),
            "volumes": list(mounts),
            "secrets": [TOKEN_SECRET],
            "working_dir": str(RUNS),
            "init": True,  # docker-init as PID 1: SIGTERM from `stop`/`down` reaches the role
            "labels": {"io.tunecluster.experiment": spec.name, "io.tunecluster.role": role.name,
                       "io.tunecluster.tuner-id": role.tuner_id},
        }
        if options.user:
            service["user"] = options.user
        if role.is_chief:
            service["restart"] = "no"
            if options.port:
                service["ports"] = [f"127.0.0.1:{port}:{port}"]
        else:
            service["restart"] = "on-failure"
            service["depends_on"] = ["chief"]
            if options.gpus:
                service["deploy"] = _gpu_reservation(options.gpus)
        services[role.name] = service
    return {
        "services": services,
        "volumes": {VOLUME: {"labels": {"io.tunecluster.experiment": spec.name}}},
        "secrets": {TOKEN_SECRET: {"file": str(root / "secrets" / "token")}},
    }


def compose_yaml(doc: dict, project: str) -> str:
    """The compose document as YAML, with a header saying how it was made and how to run it."""
    header = (f"# docker compose file of tunecluster project {project}, written by `tunecluster up`"
              " (or `render`).\n"
              f"# Run by hand: docker compose -p {project} -f THIS_FILE up -d   (or docker-compose)\n")
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def parse_gpus(value: Optional[str]) -> Optional[Union[int, str]]:
    """`--gpus`: a count per worker or "all"."""
    if value is None or value in ("", "0"):
        return None
    if value == "all":
        return "all"
    if re.fullmatch(r"[1-9][0-9]*", value):
        return int(value)
    raise UsageError(f"--gpus {value!r}: give a number of GPUs per worker or 'all'")
