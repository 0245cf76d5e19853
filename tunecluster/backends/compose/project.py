"""The compose backend: `tunecluster up --backend compose` and the commands that follow such a run
(status, logs, results, pull, down), driving `docker compose` (v2) or `docker-compose` (v1) and the
docker CLI.

The host run directory (`--dir`) holds what this backend wrote and what it copied out:

    <dir>/spec.yaml              the spec as run (host paths)
    <dir>/docker-compose.yml     the rendered compose file (`compose.render_compose`)
    <dir>/token                  the oracle token, mode 0600, a compose secret (never in the image)
    <dir>/input/                 mounted read-only at /tunecluster/input: spec.yaml with container
                                 paths, data/ (the CSV), code/ (a model or loader file or module)
    <dir>/cluster.json           "backend": "compose", project, image, compose command, each
                                 role's container state
    <dir>/progress.json, results.json, results.csv   copied from the volume while `up` follows the
                                 search, and by `status` / `results`
    <dir>/best/                  copied from the volume by `tunecluster pull`
    <dir>/logs/<role>.log        the containers' logs, saved by `down` before it removes them

The shared volume is read with `docker cp` out of the chief's container (running or exited), or,
once that is gone, out of a short-lived helper container of the same image: no port is published
for that and nothing else runs on the host.

A worker container that exits with an error while the search runs is started again by Docker
(`restart: on-failure`) or, when Docker will not (a `docker kill` turns the restart policy off for
that container), by `up` itself: same container, same KERASTUNER_TUNER_ID, so the oracle hands it
its own trial back.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from rich.console import Console

from tunecluster.backends.compose import render
from tunecluster.ui.live import LiveView
from tunecluster.backends.local.processes import default_tf_threads, port_in_use
from tunecluster.core.rundir import RunDir, read_json, write_atomic, write_json
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.tuning.spec import Experiment, dump_spec

COMPOSE_ENV = "TUNECLUSTER_COMPOSE"  # force the compose tool: "docker compose" or "docker-compose"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
MAX_RESTARTS = 3  # restarts `up` itself gives one worker (Docker's own policy aside)
SYNCED = ("progress.json", "results.json", "results.csv")


# --- the docker and compose CLIs -------------------------------------------------------------
def docker(*args: str, check: bool = True, timeout: float = 120, text: bool = True) -> subprocess.CompletedProcess:
    """Run the docker CLI; a missing CLI is a one-line UsageError, a failure a RunFailure."""
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=text, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UsageError("the docker CLI is not installed; install Docker (e.g. apt-get install docker.io) "
                         "or use --backend local") from None
    if check and done.returncode != 0:
        raise RunFailure(f"docker {args[0]} failed: {_last_line(done.stderr)}")
    return done


def _last_line(text, default: str = "no message") -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else default


def check_engine() -> str:
    """The Docker engine's version; a UsageError saying what to do when none answers."""
    done = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30)
    if done.returncode != 0 or not done.stdout.strip():
        raise UsageError(f"no Docker engine reachable ({_last_line(done.stderr)}); start dockerd "
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
                         f"checkout with `docker build -t {image} .` or `up --build` (README, \"Compose "
                         "backend\"), or pass --image NAME")


def build_image(image: str, console: Console) -> None:
    """`docker build -t IMAGE` from the checkout tunecluster runs from (its Dockerfile), with
    Docker's output shown; a UsageError when tunecluster is installed without its sources."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "Dockerfile").is_file():
        raise UsageError(f"--build needs a tunecluster checkout (no Dockerfile beside {root / 'tunecluster'}); "
                         "build the image there with `docker build -t IMAGE .` and pass --image IMAGE")
    console.print(f"building {image} from {root} ...", highlight=False)
    try:
        code = subprocess.run(["docker", "build", "-t", image, str(root)], stdin=subprocess.DEVNULL).returncode
    except FileNotFoundError:
        raise UsageError("the docker CLI is not installed; install Docker (e.g. apt-get install docker.io)") from None
    if code != 0:
        raise RunFailure(f"docker build -t {image} {root} failed (exit code {code}); see its output above")


# --- writing the run directory ---------------------------------------------------------------
def write_token(path: Path) -> None:
    """A fresh token in a 0600 file; as root, owned by the image's user so it can read it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32))
    os.chmod(path, 0o600)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.chown(path, render.IMAGE_UID, 0)


def write_inputs(run: RunDir, spec: Experiment) -> None:
    """`<run>/input`: the container spec and copies of the files it names, world-readable."""
    inputs = render.stage_inputs(spec)
    folder = run.root / render.INPUT_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for source, rel in inputs.files:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(source, target)
    (folder / "code").mkdir(exist_ok=True)
    write_atomic(folder / "spec.yaml", dump_spec(inputs.spec))
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def compose_options(spec: Experiment, run: RunDir, image: str, port: Optional[int],
                    gpus: Optional[str]) -> render.ComposeOptions:
    return render.ComposeOptions(run_root=run.root, image=image, port=port or spec.cluster.port,
                                 gpus=render.parse_gpus(gpus), user=render.container_user(),
                                 tf_threads=default_tf_threads(spec.cluster.workers))


def render_text(spec: Experiment, run: RunDir, image: str, port: Optional[int], gpus: Optional[str]) -> str:
    """What `tunecluster render --backend compose` prints (and `up` writes)."""
    options = compose_options(spec, run, image, port, gpus)
    return render.compose_yaml(render.render_compose(spec, options), render.project_name(spec.name, run.root))


# --- one compose run -------------------------------------------------------------------------
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
                done = docker("cp", f"{source}:{self.volume_dir}/{name}", "-", check=False, text=False, timeout=300)
                if done.returncode != 0:
                    continue
                _extract_into(done.stdout, self.run.root, name)
                copied.append(name)
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


def _extract_into(tar_bytes: bytes, root: Path, name: str) -> None:
    """Unpack what `docker cp ... -` wrote (a tar of the path's last component) at root/name."""
    target = root / name
    with tempfile.TemporaryDirectory(dir=root, prefix=".copy-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(tmp, **kwargs)
        unpacked = Path(tmp) / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        if unpacked.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(unpacked), str(target))
        else:
            os.replace(unpacked, target)


# --- up ------------------------------------------------------------------------------------
def up_compose(spec: Experiment, run: RunDir, *, image: str, port: Optional[int], gpus: Optional[str],
               console: Console, detach: bool = False, resume: bool = False, build: bool = False) -> int:
    """Render, start and follow one compose run; return the exit code for the CLI."""
    check_engine()
    command = compose_command()
    if build:
        build_image(image, console)
    check_image(image)
    options = compose_options(spec, run, image, port, gpus)
    if options.port and port_in_use("127.0.0.1", options.port):
        raise UsageError(f"port {options.port} on 127.0.0.1 is in use; pass another --port, or leave it out "
                         "(the oracle then stays inside the compose network)")
    project = render.project_name(spec.name, run.root)
    if not resume:
        leftovers = remove_project(project, volumes=True)
        if leftovers:
            console.print(f"removed what an earlier run in {run.root} left: {', '.join(leftovers)}", highlight=False)
    compose_file = run.root / render.COMPOSE_FILE
    token = run.root / render.TOKEN_NAME
    write_inputs(run, spec)
    if not (resume and token.is_file()):
        write_token(token)
    doc = render.render_compose(spec, options)
    write_atomic(compose_file, render.compose_yaml(doc, project))
    run.progress.unlink(missing_ok=True)
    info = {"backend": "compose", "experiment": spec.name, "project": project, "image": image,
            "compose_command": command, "compose_file": str(compose_file),
            "chief_address": (f"127.0.0.1:{options.port}" if options.port
                              else f"chief:{render.CONTAINER_PORT} (inside the compose network)"),
            "volume_path": render.run_dir_in_container(spec.name),
            "role_ids": {name: service["environment"]["KERASTUNER_TUNER_ID"]
                         for name, service in doc["services"].items()},
            "roles": []}
    write_json(run.cluster, info)
    cluster = ComposeRun(run, info)
    console.print(f"tunecluster: {spec.name} ({spec.tuner.kind}, {spec.tuner.max_trials} trials, "
                  f"{spec.cluster.workers} workers) as compose project {project} ({' '.join(command)}, "
                  f"image {image}); files in {run.root}", highlight=False)
    started = time.time()
    done = cluster.compose("up", "-d", *(["--force-recreate"] if resume else []))
    if done.returncode != 0:
        cluster.record()
        raise _up_error(done.stderr + done.stdout, options.port, image)
    cluster.record()
    if detach:
        console.print(f"detached; follow with `tunecluster status --dir {run.root}`", highlight=False)
        return 0
    try:
        Follower(cluster, console).follow(LiveView(run, console))
    except KeyboardInterrupt:
        console.print("\ninterrupted: stopping the containers ...", highlight=False)
        cluster.compose("stop")
        cluster.record()
        console.print(f"stopped. Resume with: tunecluster up --backend compose --dir {run.root} --resume "
                      "(and the same -f SPEC or --example)", highlight=False)
        return 130
    return _outcome(cluster, console, time.time() - started)


def _up_error(output: str, port: Optional[int], image: str) -> Exception:
    lowered = output.lower()
    if "port is already allocated" in lowered or "address already in use" in lowered:
        return UsageError(f"port {port} on 127.0.0.1 is in use; pass another --port or leave it out")
    if "no such image" in lowered or "pull access denied" in lowered or "manifest unknown" in lowered:
        return UsageError(f"image {image} not found in the Docker engine; build it with `docker build -t {image} .`")
    return RunFailure(f"compose up failed: {_last_line(output)}")


class Follower:
    """What `up` watches while the search runs: the containers' states (at most once a second),
    the progress file copied out of the volume, and workers to start again."""

    def __init__(self, cluster: ComposeRun, console: Console, interval: float = 1.0,
                 gone_grace: float = 30.0):
        self.cluster = cluster
        self.console = console
        self.interval = interval
        self.gone_grace = gone_grace
        self._checked = 0.0
        self._alive = True
        self._workers_gone_since: Optional[float] = None
        self.failure: Optional[str] = None

    def follow(self, view: LiveView) -> None:
        view.follow(self.alive)
        if self.failure:
            raise RunFailure(self.failure)

    def alive(self) -> bool:
        now = time.time()
        if now - self._checked < self.interval:
            return self._alive
        self._checked = now
        containers = self.cluster.containers()
        self.cluster.copy_out(("progress.json",), containers)
        chief = containers.get("chief")
        status = chief["State"]["Status"] if chief else "removed"
        self._alive = status in ("created", "running", "restarting")
        if self._alive:
            self._restart_failed_workers(containers)
            self._check_workers(containers, now)
        self.cluster.record(containers)
        return self._alive and self.failure is None

    def _restart_failed_workers(self, containers: dict) -> None:
        for name in self.cluster.role_ids:
            item = containers.get(name)
            if name == "chief" or item is None:
                continue
            state = item["State"]
            if state["Status"] == "exited" and state["ExitCode"] != 0:
                count = self.cluster.restarts.get(name, 0)
                if count >= MAX_RESTARTS:
                    continue
                self.cluster.restarts[name] = count + 1
                self.console.print(f"{name} exited with code {state['ExitCode']}; starting it again "
                                   f"(same id {self.cluster.role_ids[name]}, restart {count + 1}/{MAX_RESTARTS})",
                                   highlight=False)
                docker("start", item["Id"], check=False)

    def _check_workers(self, containers: dict, now: float) -> None:
        workers = [containers.get(n) for n in self.cluster.role_ids if n != "chief"]
        gone = all(w is None or w["State"]["Status"] in ("exited", "dead") for w in workers)
        if not gone:
            self._workers_gone_since = None
            return
        self._workers_gone_since = self._workers_gone_since or now
        if now - self._workers_gone_since > self.gone_grace:
            failed = [n for n in self.cluster.role_ids if n != "chief" and containers.get(n)
                      and containers[n]["State"]["ExitCode"] != 0]
            self.failure = (f"every worker exited before the search ended ({', '.join(failed) or 'no error code'}); "
                            f"see `tunecluster logs {failed[0] if failed else 'worker-0'} --dir {self.cluster.run.root}`")


def _outcome(cluster: ComposeRun, console: Console, elapsed: float) -> int:
    """After the chief's exit: let the workers finish, copy the results out, judge the search."""
    deadline = time.time() + 30
    while time.time() < deadline:
        containers = cluster.containers()
        if all(containers.get(n) is None or containers[n]["State"]["Status"] in ("exited", "dead")
               for n in cluster.role_ids):
            break
        time.sleep(0.5)
    containers = cluster.containers()
    cluster.copy_out(SYNCED, containers)
    info = cluster.record(containers)
    progress = read_json(cluster.run.progress) or {}
    chief = next((r for r in info["roles"] if r["name"] == "chief"), {})
    code = chief.get("exit_code")
    console.print(f"search ended in {elapsed:.1f} s (chief exit code {code})", highlight=False)
    failed = [r["name"] for r in info["roles"] if r["exit_code"] not in (0, None)]
    if failed:
        console.print(f"roles that failed: {', '.join(failed)} (see `tunecluster logs ROLE --dir {cluster.run.root}`)",
                      highlight=False)
    if progress.get("search_failed"):
        raise RunFailure(f"the search stopped: {progress['search_failed']}")
    if (progress.get("export") or {}).get("state") == "failed":
        raise RunFailure(f"exporting the best model failed: {progress['export'].get('message')}")
    if code != 0:
        raise RunFailure(f"the chief exited with code {code}: {_last_line(cluster.logs('chief', 50), '(no log)')}")
    if not progress.get("finished"):
        raise RunFailure(f"the search did not finish; see `tunecluster logs chief --dir {cluster.run.root}`")
    return 0


def best_model_hint(run: RunDir, spec=None) -> str:
    info = read_json(run.cluster) or {}
    what, name = (("best configuration", "hyperparameters.json") if spec is not None and spec.run_trial
                  else ("best model", "model.keras"))
    return (f"{what}: {info.get('volume_path')}/best/{name} on the volume of {info.get('project')}; "
            f"copy it out with `tunecluster pull --dir {run.root} --to best`")
