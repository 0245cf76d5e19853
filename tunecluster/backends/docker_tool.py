"""The docker command-line tool as tunecluster calls it (the compose backend and `tunecluster
build`): a missing CLI or engine is a one-line UsageError that says what to install or start; a
failed command a RunFailure with docker's own last line; the tunecluster image built from the
checkout's Dockerfile."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Optional

from tunecluster.core.errors import RunFailure, UsageError

CHECKOUT = Path(__file__).resolve().parents[2]  # the folder holding tunecluster/ (and, in a checkout, the Dockerfile)


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


def image_exists(image: str) -> bool:
    return docker("image", "inspect", image, check=False, timeout=30).returncode == 0


def docker_build(tag: str, context: Path, say: Callable[[str], None], *, build_args: Optional[dict] = None,
                 dockerfile: Optional[Path] = None) -> None:
    """`docker build -t TAG CONTEXT` with Docker's output shown; a RunFailure when it fails."""
    args = ["docker", "build", "-t", tag]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    if dockerfile is not None:
        args += ["-f", str(dockerfile)]
    try:
        code = subprocess.run([*args, str(context)], stdin=subprocess.DEVNULL).returncode
    except FileNotFoundError:
        raise UsageError("the docker CLI is not installed; install Docker (e.g. apt-get install docker.io)") from None
    if code != 0:
        raise RunFailure(f"docker build -t {tag} {context} failed (exit code {code}); see its output above")


def build_tunecluster_image(image: str, say: Callable[[str], None], *, base: Optional[str] = None,
                            venv_args: Optional[str] = None) -> None:
    """The tunecluster image (chief, workers) from the checkout tunecluster runs from (its
    Dockerfile; BASE and VENV_ARGS are its build arguments); a UsageError when tunecluster is
    installed without its sources."""
    if not (CHECKOUT / "Dockerfile").is_file():
        raise UsageError(f"building the tunecluster image needs a tunecluster checkout (no Dockerfile beside "
                         f"{CHECKOUT / 'tunecluster'}); build it there with `docker build -t {image} .`, or name "
                         "an image that has tunecluster (`build --from IMAGE`, `up --image IMAGE`)")
    build_args = {k: v for k, v in (("BASE", base), ("VENV_ARGS", venv_args)) if v}
    say(f"building {image} from {CHECKOUT}" + (f" (base {base})" if base else "") + " ...")
    docker_build(image, CHECKOUT, say, build_args=build_args)
