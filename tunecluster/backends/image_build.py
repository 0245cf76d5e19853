"""`tunecluster build`: the image of a user's project, pushed to a registry.

The image is two layers of work on top of each other:

1. the tunecluster image (chief and workers, `tunecluster:<version>`), built from the checkout's
   Dockerfile (`docker_tool.build_tunecluster_image`; `--base` is its BASE build argument, e.g. a
   CUDA image), or named with `--from`;
2. the project on it: a Dockerfile generated here copies the project folder (minus what
   `.dockerignore` and the usual caches exclude) to `/project`, installs `requirements.txt` and,
   with a `pyproject.toml` or `setup.py`, the project itself, with `PYTHONPATH=/project` so
   sibling modules import; `--gpu` adds TensorFlow's CUDA wheels (`tensorflow[and-cuda]` at the
   installed TensorFlow's version).

`--push REGISTRY/NAME[:TAG]` tags and pushes it and records the pushed digest
(`image_record.py`), so `up` runs `REGISTRY/NAME@sha256:...` on Kubernetes. A registry that refuses
the push is one line that names it and says what to do.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tunecluster import __version__
from tunecluster.backends.docker_tool import (
    CHECKOUT,
    build_tunecluster_image,
    check_engine,
    docker,
    docker_build,
    image_exists,
    last_line,
)
from tunecluster.backends.image_record import write_record
from tunecluster.core.errors import RunFailure, TuneclusterError, UsageError

Say = Callable[[str], None]
TUNECLUSTER_IMAGE = f"tunecluster:{__version__}"  # the image the checkout's Dockerfile builds (README, compose)
CONTEXT_LIMIT = 512 * 1024 * 1024  # bytes of project files an image takes; data belongs on the volume
PROJECT_ROOT = "/project"
IMAGE_USER = "10001:0"  # the tunecluster image's non-root user (Dockerfile)
# never copied into the image (besides the patterns of the project's .dockerignore)
ALWAYS_IGNORED = (".git", ".hg", ".svn", "__pycache__", "*.pyc", "*.pyo", ".venv", "venv", ".tunecluster",
                  "tunecluster-runs", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints",
                  "node_modules", ".DS_Store", "*.egg-info", ".env")
_NAME = re.compile(r"[^a-z0-9._-]+")
_DIGEST = re.compile(r"digest:\s*(sha256:[0-9a-f]{64})")


@dataclass
class Project:
    """What `build` reads from a project folder."""

    root: Path
    name: str
    version: str
    requirements: bool  # requirements.txt
    installable: bool  # pyproject.toml (with a [project] or [build-system] table) or setup.py
    files: list[str] = field(default_factory=list)  # relative paths, POSIX
    size: int = 0


def read_project(root: Path) -> Project:
    """The project's name and version (pyproject.toml's [project], else the folder's name and
    tunecluster's version), its install files and the files the image takes."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise UsageError(f"project folder {root} does not exist; pass the folder with your tunecluster.yaml")
    name, version = root.name, __version__
    installable = (root / "setup.py").is_file()
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            document = tomllib.loads(pyproject.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{pyproject}: not valid TOML ({exc}); fix it or remove it") from None
        table = document.get("project") or {}
        name = table.get("name") or name
        version = table.get("version") or version
        installable = installable or bool(table) or "build-system" in document
    files, size = project_files(root)
    return Project(root, image_name(name), str(version), (root / "requirements.txt").is_file(), installable,
                   files, size)


def image_name(text: str) -> str:
    """A Docker repository name from a project name (lowercase, [a-z0-9._-])."""
    cleaned = _NAME.sub("-", text.lower()).strip("-._")
    return cleaned or "project"


def _ignore_patterns(root: Path) -> list[str]:
    patterns = list(ALWAYS_IGNORED)
    ignore = root / ".dockerignore"
    if ignore.is_file():
        for line in ignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and not line.startswith("!"):
                patterns.append(line.lstrip("/").rstrip("/"))
    return patterns


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        if "/" in pattern:
            if fnmatch.fnmatch(relative, pattern) or relative.startswith(pattern + "/"):
                return True
        elif any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def project_files(root: Path, limit: int = CONTEXT_LIMIT) -> tuple[list[str], int]:
    """The project's files the image takes (sorted, relative), and their size; a UsageError naming
    the largest files when they add up to more than `limit`."""
    patterns = _ignore_patterns(root)
    files: list[tuple[str, int]] = []
    for folder, dirs, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        rel_folder = "" if rel_folder == "." else rel_folder + "/"
        dirs[:] = sorted(d for d in dirs if not _ignored(rel_folder + d, patterns)
                         and not (Path(folder, d) / "pyvenv.cfg").is_file())
        for name in sorted(names):
            relative = rel_folder + name
            path = Path(folder, name)
            if _ignored(relative, patterns) or path.is_symlink() or not path.is_file():
                continue
            files.append((relative, path.stat().st_size))
    files.sort()
    total = sum(size for _, size in files)
    if total > limit:
        largest = ", ".join(f"{name} ({size // 2**20} MiB)" for name, size in sorted(files, key=lambda f: -f[1])[:3])
        raise UsageError(f"the project folder {root} holds {total // 2**20} MiB of files for the image (limit "
                         f"{limit // 2**20} MiB; largest: {largest}); list data files in .dockerignore and put "
                         "them on the volume (`tunecluster upload`)")
    return [name for name, _ in files], total


def dockerfile(project: Project, base: str, *, gpu: bool) -> str:
    """The generated Dockerfile of the project image, FROM the tunecluster image `base`."""
    lines = [
        f"# Generated by `tunecluster build` for {project.name} {project.version}: the project on the tunecluster image.",
        f"FROM {base}",
        "USER 0",
        "ENV PIP_DISABLE_PIP_VERSION_CHECK=1",
    ]
    if gpu:  # TensorFlow's CUDA libraries as wheels, at the version the image already has
        lines.append('RUN pip install --no-cache-dir "tensorflow[and-cuda]==$(pip show tensorflow | '
                     "sed -n 's/^Version: //p')\"")
    if project.requirements:  # their own layer: a code change does not reinstall them
        lines += [f"COPY project/requirements.txt {PROJECT_ROOT}/requirements.txt",
                  f"RUN pip install --no-cache-dir -r {PROJECT_ROOT}/requirements.txt"]
    lines.append(f"COPY --chown={IMAGE_USER} project/ {PROJECT_ROOT}/")
    if project.installable:
        lines.append(f"RUN pip install --no-cache-dir {PROJECT_ROOT}")
    lines += [
        "RUN tunecluster --version",  # the project's requirements left tunecluster working
        f"ENV PYTHONPATH={PROJECT_ROOT}",
        f"WORKDIR {PROJECT_ROOT}",
        f"LABEL io.tunecluster.project={project.name} io.tunecluster.project-version={project.version} "
        f"io.tunecluster.version={__version__}",
        f"USER {IMAGE_USER}",
    ]
    return "\n".join(lines) + "\n"


def write_context(project: Project, into: Path, base: str, *, gpu: bool) -> Path:
    """The build context: `Dockerfile` and `project/` (the project's files); returns `into`."""
    into = Path(into)
    for relative in project.files:
        target = into / "project" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project.root / relative, target)
    (into / "project").mkdir(parents=True, exist_ok=True)
    (into / "Dockerfile").write_text(dockerfile(project, base, gpu=gpu))
    return into


@dataclass(frozen=True)
class PushTarget:
    registry: str
    repository: str  # with the registry
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def push_target(text: str, default_tag: str) -> PushTarget:
    """`--push REGISTRY/NAME[:TAG]`; TAG defaults to `default_tag` (the project's version)."""
    if "@" in text or not text or text != text.strip():
        raise UsageError(f"--push {text!r}: give REGISTRY/NAME[:TAG] (a digest is what the push makes)")
    head, _, last = text.rpartition("/")
    repo, tag = (f"{head}/{last}" if head else last), default_tag
    if ":" in last:
        name, tag = last.split(":", 1)
        repo = f"{head}/{name}" if head else name
    first = repo.split("/", 1)[0]
    registry = first if "/" in repo and ("." in first or ":" in first or first == "localhost") else "docker.io"
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag) or not re.fullmatch(
            r"[a-zA-Z0-9.:_/-]+", repo) or repo != repo.rstrip("/"):
        raise UsageError(f"--push {text!r}: not an image reference; give REGISTRY/NAME[:TAG], e.g. "
                         "registry.example.com/ml/myproject:0.3.0")
    path = repo.split("/", 1)[1] if registry != "docker.io" or repo.startswith("docker.io/") else repo
    if path != path.lower():
        raise UsageError(f"--push {text!r}: repository names are lowercase")
    return PushTarget(registry, repo, tag)


def push_error(output: str, target: PushTarget) -> TuneclusterError:
    """One line for a refused `docker push`: which registry, why, what to do."""
    text = output.lower()
    registry = target.registry
    last = last_line(output)
    if "no basic auth credentials" in text or "authentication required" in text or "unauthorized" in text:
        return RunFailure(f"not logged in to {registry}: run `docker login {registry}` (then build --push again)")
    if "denied" in text:
        return RunFailure(f"{registry} refused the push of {target.repository} ({last}); log in as a user "
                          f"that may push there (`docker login {registry}`) or push to a repository you own")
    if "http response to https client" in text:
        return RunFailure(f"{registry} answers plain HTTP: add it to \"insecure-registries\" in "
                          "/etc/docker/daemon.json and restart dockerd, or serve it with TLS")
    if "x509" in text or "certificate" in text:
        return RunFailure(f"{registry}'s TLS certificate is not trusted ({last}); put its CA certificate in "
                          f"/etc/docker/certs.d/{registry}/ca.crt")
    if any(s in text for s in ("connection refused", "no such host", "i/o timeout", "dial tcp",
                               "network is unreachable", "connection reset")):
        return RunFailure(f"cannot reach the registry {registry} ({last}); check its address and that it runs")
    return RunFailure(f"docker push {target.ref} failed: {last}")


def push(target: PushTarget, say: Say, timeout: float = 3600) -> str:
    """`docker push`; the pushed digest (sha256:...)."""
    say(f"pushing {target.ref} ...")
    done = docker("push", target.ref, check=False, timeout=timeout)
    output = (done.stdout or "") + "\n" + (done.stderr or "")
    if done.returncode != 0:
        raise push_error(output, target)
    found = _DIGEST.search(output)
    if found:
        return found.group(1)
    # older engines: the repo digest the push recorded
    digests = docker("image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", target.ref,
                     check=False).stdout.split()
    for digest in digests:
        if digest.startswith(target.repository + "@"):
            return digest.split("@", 1)[1]
    raise RunFailure(f"docker push {target.ref} gave no digest; see `docker image inspect {target.ref}`")


def tunecluster_base(base: Optional[str], from_image: Optional[str], say: Say) -> str:
    """The tunecluster image the project goes on: `--from IMAGE`, else `tunecluster:<version>`
    (on `--base`: `tunecluster:<version>-<hash>`) built from the checkout's Dockerfile (Docker's
    cache makes an unchanged rebuild quick), or the engine's copy when there is no checkout."""
    if from_image:
        if base:
            raise UsageError("give either --from (an image with tunecluster) or --base (what to build it on), not both")
        return from_image
    image = TUNECLUSTER_IMAGE if not base else \
        f"{TUNECLUSTER_IMAGE}-{hashlib.sha256(base.encode()).hexdigest()[:8]}"
    if (CHECKOUT / "Dockerfile").is_file():
        # a base with its own TensorFlow (a CUDA image) is reused through the system site-packages
        build_tunecluster_image(image, say, base=base, venv_args="--system-site-packages" if base else None)
    elif not image_exists(image):
        raise UsageError(f"the tunecluster image {image} is not in the Docker engine and tunecluster is installed "
                         "without its sources (no Dockerfile); build it in a checkout (`docker build -t "
                         f"{image} .`) or name one with --from IMAGE")
    return image


@dataclass(frozen=True)
class BuildOptions:
    tag: Optional[str] = None  # the local tag (default <project>:<version>)
    push: Optional[str] = None  # REGISTRY/NAME[:TAG]
    gpu: bool = False
    base: Optional[str] = None  # the tunecluster image's BASE (e.g. a CUDA image)
    from_image: Optional[str] = None  # an image that has tunecluster already


def build_project(root: Path, options: BuildOptions, say: Say) -> dict:
    """Build (and push) the project image; write and return the record `up` reads."""
    project = read_project(root)
    target = push_target(options.push, project.version) if options.push else None  # bad input before a build
    local = options.tag or f"{project.name}:{project.version}"
    check_engine()
    base = tunecluster_base(options.base, options.from_image, say)
    say(f"project {project.root}: {len(project.files)} files ({project.size / 2**20:.1f} MiB)"
        + (", requirements.txt" if project.requirements else "")
        + (", installed with pip (pyproject.toml/setup.py)" if project.installable else ""))
    with tempfile.TemporaryDirectory(prefix="tunecluster-build-") as scratch:
        context = write_context(project, Path(scratch), base, gpu=options.gpu and not options.base)
        say(f"building {local} on {base} ...")
        docker_build(local, context, say)
    record = {"local": local, "from": base, "gpu": options.gpu or bool(options.base), "built_at": time.time(),
              "project": project.name, "version": project.version}
    if target is not None:
        docker("tag", local, target.ref)
        digest = push(target, say)
        record.update({"pushed": target.ref, "digest": digest, "reference": f"{target.repository}@{digest}"})
    path = write_record(project.root, record)
    say(f"built {local}" + (f"; pushed {record['reference']}" if target else "") + f" (recorded in {path})")
    return record
