"""One compose run, found through `<run>/cluster.json`: its containers (by the project's labels,
so it works without the compose file too), their states, the shared volume read with `docker cp`
(out of the chief's container, running or exited, else out of a short-lived helper container of
the same image: no port is published for that), the containers' logs, and its removal.

The host run folder (`--dir`) holds what the compose backend wrote and what it copied out:

    <dir>/spec.yaml              the spec as run (host paths)
    <dir>/docker-compose.yml     the rendered compose file (`render.render_compose`)
    <dir>/secrets/token          the oracle token, mode 0600, a compose secret (never in the image)
    <dir>/input/                 mounted read-only at /tunecluster/input (`inputs.py`)
    <dir>/cluster.json           "backend": "compose", project, image, compose command, each
                                 role's container state
    <dir>/progress.json, results.json   copied from the volume while `up` follows the search, and
                                 by `status` / `results` (a copy that caught a file mid-rewrite
                                 is read again: `copy_path`); results.csv is written here from
                                 the copied results.json
    <dir>/best/                  copied from the volume by `tunecluster pull`
    <dir>/logs/<role>.log        the containers' logs, saved by `down` before it removes them
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from tunecluster.backends.compose import render
from tunecluster.backends.compose.docker_cli import PROJECT_LABEL, SERVICE_LABEL, compose_command, docker
from tunecluster.core.archives import extract_tar
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, read_json, write_atomic, write_json
from tunecluster.tuning.results import to_csv

SYNCED = ("progress.json", "results.json")  # and results.csv, written from results.json
COPY_TRIES = 5


class TornCopy(Exception):
    """A copy out of a container that caught a file in the middle of its replacement."""


class ComposeRun:
    """The containers, volume and files of one compose run, found through `<run>/cluster.json`."""

    def __init__(self, run: RunDir, info: dict):
        self.run = run
        self.info = info
        self.project: str = info["project"]
        self.experiment: str = info["experiment"]
        self.image: str = info["image"]
        self.compose_file = Path(info["compose_file"])
        self.role_ids: dict[str, str] = info["role_ids"]  # role name -> tuner id
        self.restarts: dict[str, int] = info.setdefault("restarted_by_up", {})
        self.volume_gone = False

    @classmethod
    def of(cls, run: RunDir) -> Optional["ComposeRun"]:
        info = read_json(run.cluster)
        if not info or info.get("backend") != "compose":
            return None
        return cls(run, info)

    @property
    def volume_dir(self) -> str:
        return render.run_dir_in_container(self.experiment)

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """The compose tool this run was started with (cluster.json); when that one is gone (v1
        uninstalled after v2 came, or the other way round) the one that runs now: v1 and v2 read
        the same file and find the project's containers by the same labels."""
        command = self.info.get("compose_command") or compose_command()
        try:
            return self._compose(command, args, timeout)
        except (FileNotFoundError, PermissionError):
            return self._compose(compose_command(), args, timeout)

    def _compose(self, command: Sequence[str], args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([*command, "-p", self.project, "-f", str(self.compose_file), *args],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    # -- containers
    def containers(self) -> dict[str, dict]:
        """Service name -> `docker inspect` of its container (services without one are absent)."""
        ids = docker("ps", "-aq", "--filter", f"label={PROJECT_LABEL}={self.project}",
                     "--filter", "label=com.docker.compose.oneoff=False").stdout.split()
        if not ids:
            return {}
        found = {}
        # check=False: a container removed since `ps` is only missing from the answer.
        for item in json.loads(docker("inspect", *ids, check=False).stdout or "[]"):
            service = item["Config"]["Labels"].get(SERVICE_LABEL)
            if service:
                found[service] = item
        return found

    def roles(self, containers: Optional[dict] = None) -> list[dict]:
        containers = self.containers() if containers is None else containers
        roles = []
        for name, tuner_id in self.role_ids.items():
            item = containers.get(name)
            state = item["State"] if item else {}
            status = state.get("Status", "removed")
            roles.append({
                "name": name, "tuner_id": tuner_id,
                "state": status if status != "exited" else ("exited" if state.get("ExitCode") == 0 else "failed"),
                "pid": state.get("Pid") or None,
                "exit_code": state.get("ExitCode") if status == "exited" else None,
                "restarts": (item or {}).get("RestartCount", 0) + self.restarts.get(name, 0),
                "health": (state.get("Health") or {}).get("Status") if status == "running" else None,
                "container": (item or {}).get("Name", "").lstrip("/") or None,
            })
        return roles

    def record(self, containers: Optional[dict] = None) -> dict:
        self.info["roles"] = self.roles(containers)
        write_json(self.run.cluster, self.info)
        return self.info

    # -- the volume
    def _helper(self) -> Optional[str]:
        volumes = docker("volume", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={self.project}").stdout.split()
        if not volumes:
            self.volume_gone = True
            return None
        return docker("create", "--label", f"io.tunecluster.helper={self.project}",
                      "-v", f"{volumes[0]}:{render.RUNS}:ro", "--entrypoint", "true", self.image).stdout.strip()

    def copy_out(self, names: Sequence[str], containers: Optional[dict] = None) -> list[str]:
        """Copy files or folders of the run directory in the volume into the host run directory;
        return those that exist there. Reads from the chief's container, else from a helper
        container; copies nothing once the volume is gone (`volume_gone` tells)."""
        chief = (self.containers() if containers is None else containers).get("chief")
        helper = None
        source = chief["Id"] if chief else None
        if source is None:
            helper = source = self._helper()
            if source is None:
                return []
        copied = []
        try:
            for name in names:
                if not copy_path(source, f"{self.volume_dir}/{name}", self.run.root, name):
                    continue
                copied.append(name)
                document = read_json(self.run.results_json) if name == "results.json" else None
                if document:
                    write_atomic(self.run.results_csv, to_csv(document))
        finally:
            if helper:
                docker("rm", "-f", helper, check=False)
        return copied

    def refresh(self) -> dict:
        """Copy the progress and results out, record the containers' state; return cluster.json."""
        containers = self.containers()
        self.copy_out(SYNCED, containers)
        return self.record(containers)

    # -- logs and teardown
    def logs(self, role: str, tail: int) -> Optional[str]:
        item = self.containers().get(role)
        if item is None:
            return None
        done = docker("logs", *(["--tail", str(tail)] if tail else []), item["Id"], check=False)
        return done.stdout + done.stderr

    def save_logs(self) -> list[str]:
        saved = []
        for name, item in self.containers().items():
            done = docker("logs", item["Id"], check=False)
            write_atomic(self.run.log(name), done.stdout + done.stderr)
            saved.append(name)
        return saved

    def down(self, volumes: bool) -> list[str]:
        """Save the logs, remove the containers and network (and the volume); return what was
        removed, found by the project's labels (so it also works without the compose file)."""
        self.save_logs()
        if self.compose_file.is_file():
            try:
                self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []))
            except UsageError:
                pass  # no compose tool runs any more: the labels below find everything
        return remove_project(self.project, volumes=volumes)


def remove_project(project: str, volumes: bool) -> list[str]:
    """Remove whatever is left of a compose project (containers, helpers, network, volume)."""
    removed = []
    for label in (f"{PROJECT_LABEL}={project}", f"io.tunecluster.helper={project}"):
        ids = docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)
            removed += [f"container {i[:12]}" for i in ids]
    networks = docker("network", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={project}").stdout.split()
    if networks:
        docker("network", "rm", *networks, check=False)
        removed += [f"network {n[:12]}" for n in networks]
    if volumes:
        names = docker("volume", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={project}").stdout.split()
        if names:
            docker("volume", "rm", "-f", *names, check=False)
            removed += [f"volume {n}" for n in names]
    return removed


def copy_path(source: str, path: str, root: Path, name: str, tries: int = COPY_TRIES) -> bool:
    """Copy `path` out of container `source` to root/name with `docker cp`; False when it is not
    there. `docker cp` takes a file's size when it lists the file and its bytes when it reads it:
    a file replaced in between (the chief rewrites progress.json every second) comes as the new
    file's first bytes cut to the old size, or as a tar cut short. Such a copy is refused (a JSON
    file must parse) and read again; the replacement is atomic, so a later read is whole. After
    `tries` torn reads, root/name keeps what it had."""
    for attempt in range(tries):
        done = docker("cp", f"{source}:{path}", "-", check=False, text=False, timeout=300)
        if done.returncode != 0:
            return False
        try:
            _extract_into(done.stdout, root, name)
            return True
        except TornCopy:
            time.sleep(0.05 * (attempt + 1))
    return False


def _extract_into(tar_bytes: bytes, root: Path, name: str) -> None:
    """Unpack what `docker cp ... -` wrote (a tar of the path's last component) at root/name;
    TornCopy, and nothing changed, when the tar is cut short or a JSON file in it does not parse."""
    target = root / name
    with tempfile.TemporaryDirectory(dir=root, prefix=".copy-") as tmp:
        try:
            extract_tar(io.BytesIO(tar_bytes), Path(tmp))
        except tarfile.TarError as cut:
            raise TornCopy(f"{name}: {cut}") from cut
        unpacked = Path(tmp) / Path(name).name
        for document in [unpacked] if unpacked.is_file() else unpacked.rglob("*.json"):
            if document.suffix == ".json":
                try:
                    json.loads(document.read_bytes())
                except ValueError as torn:
                    raise TornCopy(f"{name}: {torn}") from torn
        target.parent.mkdir(parents=True, exist_ok=True)
        if unpacked.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(unpacked), str(target))
        else:
            os.replace(unpacked, target)
