"""The compose command-line tools (`docker compose` v2 or `docker-compose` v1), as the compose
backend calls them, and the docker CLI helpers it shares with `tunecluster build`
(`backends/docker_tool.py`, re-exported here): a missing tool or engine is a one-line UsageError
that says what to install or start; a failed command a RunFailure with docker's own last line."""

from __future__ import annotations

import os
import subprocess
from typing import Callable

from tunecluster.backends.docker_tool import build_tunecluster_image, check_engine, docker, last_line
from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError

__all__ = ["check_engine", "docker", "last_line", "compose_command", "check_image", "build_image"]

COMPOSE_ENV = role_env.COMPOSE_TOOL  # force the compose tool: "docker compose" or "docker-compose"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


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
    """`up --build`: the tunecluster image from this checkout's Dockerfile (see docker_tool)."""
    build_tunecluster_image(image, say)
