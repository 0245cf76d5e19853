"""The docker and compose command-line tools, as the compose backend calls them: a missing tool
or engine is a one-line UsageError that says what to install or start; a failed command a
RunFailure with docker's own last line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable

from tunecluster.core import env as role_env
from tunecluster.core.errors import RunFailure, UsageError

COMPOSE_ENV = role_env.COMPOSE_TOOL  # force the compose tool: "docker compose" or "docker-compose"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def docker(*args: str, check: bool = True, timeout: float = 120, text: bool = True) -> subprocess.CompletedProcess:
    """Run the docker CLI; a missing CLI is a one-line UsageError, a failure a RunFailure."""
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=text, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UsageError("the docker CLI is not installed; install Docker (e.g. apt-get install docker.io) "
                         "or use --backend local") from None
    if check and done.returncode != 0:
        raise RunFailure(f"docker {args[0]} failed: {last_line(done.stderr)}")
    return done


def last_line(text, default: str = "no message") -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else default


def check_engine() -> str:
    """The Docker engine's version; a UsageError saying what to do when none answers."""
    done = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30)
    if done.returncode != 0 or not done.stdout.strip():
        raise UsageError(f"no Docker engine reachable ({last_line(done.stderr)}); start dockerd "
                         "(or Docker Desktop), or point DOCKER_HOST at one")
    return done.stdout.strip()


def compose_command() -> list[str]:
    """`docker compose` (v2) when the plugin is there, else `docker-compose` (v1)."""
    forced = os.environ.get(COMPOSE_ENV)
    candidates = [forced.split()] if forced else [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        try:
            done = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL)
        except (FileNotFoundError, PermissionError):
            continue
        if done.returncode == 0:
            return command
    raise UsageError("no compose tool found: install `docker compose` (Docker's compose plugin; without a "
                     "registry: e2e/compose/install-compose-v2.sh in a tunecluster checkout) or "
                     "`docker-compose` (e.g. apt-get install docker-compose)"
                     + (f"; {COMPOSE_ENV}={forced!r} does not run" if forced else ""))


def check_image(image: str) -> None:
    if docker("image", "inspect", image, check=False, timeout=30).returncode != 0:
        raise UsageError(f"image {image} not found in the Docker engine; build it from a tunecluster "
                         f"checkout with `docker build -t {image} .` or `up --build` (docs/compose.md), "
                         "or pass --image NAME")


def build_image(image: str, say: Callable[[str], None]) -> None:
    """`docker build -t IMAGE` from the checkout tunecluster runs from (its Dockerfile), with
    Docker's output shown; a UsageError when tunecluster is installed without its sources."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "Dockerfile").is_file():
        raise UsageError(f"--build needs a tunecluster checkout (no Dockerfile beside {root / 'tunecluster'}); "
                         "build the image there with `docker build -t IMAGE .` and pass --image IMAGE")
    say(f"building {image} from {root} ...")
    try:
        code = subprocess.run(["docker", "build", "-t", image, str(root)], stdin=subprocess.DEVNULL).returncode
    except FileNotFoundError:
        raise UsageError("the docker CLI is not installed; install Docker (e.g. apt-get install docker.io)") from None
    if code != 0:
        raise RunFailure(f"docker build -t {image} {root} failed (exit code {code}); see its output above")
