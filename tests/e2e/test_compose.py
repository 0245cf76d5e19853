"""End to end on a real Docker engine (marker `e2e_compose`; `python -m pytest -m e2e_compose`).

What it does, with nothing pulled from a registry:
1. a Docker engine: the one that answers, else installs docker.io + docker-compose (apt-get, as
   root) and starts `dockerd` in the background (stopped again at the end);
2. a base image: `tunecluster-base:bookworm` when the engine has it, else debootstrap of a minimal
   Debian 12 with Python, then `docker import` (TUNECLUSTER_E2E_BASE names another base);
3. the project image on it (`docker build`, wheels from this host's pip in docker/wheels/);
4. a 2-worker Pima search to completion: results, status, logs, `pull` (the model loads),
   `down --volumes` leaves no container, network or volume -- once with each compose tool:
   `docker compose` (v2, the CLI plugin; e2e/compose/install-compose-v2.sh builds one from the Go
   module proxy) and `docker-compose` (v1, Debian's 1.29.2), forced with TUNECLUSTER_COMPOSE; a
   variant is skipped (with the reason) only when its tool does not run here;
5. a second search where one worker container is `docker kill`ed mid-trial and another worker's
   process is killed from the host: both come back with their ids and every trial COMPLETES. It
   runs once, with the tool `up` picks by itself (v2 when the plugin is there, else v1);
6. `up --script` with unmodified Keras Tuner scripts (the Pima tutorial's four phases, a Hyperband,
   a custom `run_trial` subclass: tests/keras_tuner_scripts.py), the CSV beside each script.
7. a file renamed over while `docker cp` reads it (as the chief rewrites progress.json) is copied
   out whole by the compose backend, where plain `docker cp` reads come torn.

Timings (engine start, base, build, each search) are printed (`-s` shows them) and written to
$TMPDIR/tunecluster-e2e-compose-timings.json.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from tunecluster.backends.compose.docker_cli import COMPOSE_ENV
from tunecluster.backends.compose.project import ComposeRun, copy_path
from tunecluster.core.rundir import RunDir

# The session fixtures (debootstrap, wheels, a cold image build: ~10 min on 2 busy cores) count
# against the first test's timeout.
pytestmark = [pytest.mark.e2e_compose, pytest.mark.timeout(3600)]

BASE = os.environ.get("TUNECLUSTER_E2E_BASE", "tunecluster-base:bookworm")
IMAGE = "tunecluster:e2e"
TIMINGS: dict[str, float] = {}


def _run(*args, check=True, timeout=900, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _engine_up() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                          capture_output=True, timeout=30).returncode == 0


def _tool_runs(tool: str) -> bool:
    try:
        return subprocess.run([*tool.split(), "version"], capture_output=True, timeout=60,
                              stdin=subprocess.DEVNULL).returncode == 0
    except (FileNotFoundError, PermissionError, subprocess.TimeoutExpired):
        return False


COMPOSE_TOOLS = {  # TUNECLUSTER_COMPOSE value -> what to do when it does not run
    "docker compose": "install the compose v2 CLI plugin: bash e2e/compose/install-compose-v2.sh",
    "docker-compose": "install compose v1: apt-get install docker-compose",
}


def _timed(name: str, started: float) -> None:
    TIMINGS[name] = round(time.time() - started, 1)
    print(f"\n[e2e timing] {name}: {TIMINGS[name]} s", flush=True)
    (Path(tempfile.gettempdir()) / "tunecluster-e2e-compose-timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")


@pytest.fixture(scope="session")
def docker_engine():
    started = time.time()
    ours = None
    if not (_engine_up() and shutil.which("docker-compose") and shutil.which("debootstrap")):
        if os.geteuid() == 0:
            missing = [p for p, exe in (("docker.io", "dockerd"), ("docker-compose", "docker-compose"),
                                        ("debootstrap", "debootstrap")) if not shutil.which(exe)]
            if missing:
                env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                _run("apt-get", "update", "-qq", env=env)
                _run("apt-get", "install", "-y", "-qq", *missing, env=env)
        elif not (_engine_up() and shutil.which("debootstrap") and _tool_runs("docker compose")):
            # (compose v2 alone is enough: the docker-compose (v1) variant then skips)
            pytest.fail("no Docker engine (or compose tool/debootstrap) and not root to install one")
    if not _engine_up():
        log = open(Path(tempfile.gettempdir()) / "tunecluster-e2e-dockerd.log", "ab")
        ours = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while not _engine_up():
            assert ours.poll() is None, f"dockerd exited with {ours.returncode}; see {log.name}"
            assert time.time() < deadline, f"dockerd did not answer within 60 s; see {log.name}"
            time.sleep(0.5)
    _timed("engine", started)
    yield
    if ours is not None:
        ours.terminate()
        ours.wait(30)


@pytest.fixture(scope="session")
def base_image(docker_engine):
    started = time.time()
    if _run("docker", "image", "inspect", BASE, check=False).returncode != 0:
        assert BASE == "tunecluster-base:bookworm", f"base image {BASE} not found"
        with tempfile.TemporaryDirectory(prefix="tc-rootfs-", dir="/var/tmp") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _run("nice", "-n", "19", "debootstrap", "--variant=minbase",
                 "--include=python3,python3-venv,python3-pip,ca-certificates", "bookworm", str(rootfs),
                 "http://deb.debian.org/debian", timeout=1200)
            _run("sh", "-c", "rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/*", cwd=rootfs)
            _run("sh", "-c", f"tar -C {rootfs} -c . | docker import -c 'ENV LANG=C.UTF-8' - {BASE}")
    _timed("base image", started)
    return BASE


@pytest.fixture(scope="session")
def image(base_image):
    base_python = _run("docker", "run", "--rm", "--entrypoint", "python3", base_image, "-c",
                       "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
    here = "%d.%d" % sys.version_info[:2]
    assert base_python == here, (f"the base image has Python {base_python}, this test runs {here}: the "
                                 "wheels docker/fetch-wheels makes would not fit; run the suite with "
                                 f"Python {base_python}")
    started = time.time()
    _run("nice", "-n", "19", "sh", str(REPO / "docker" / "fetch-wheels"), env={**os.environ, "PYTHON": sys.executable})
    _timed("wheels", started)
    started = time.time()
    _run("nice", "-n", "19", "docker", "build", "--build-arg", f"BASE={base_image}", "-t", IMAGE, str(REPO),
         timeout=3600)
    _timed("image build", started)
    size = int(_run("docker", "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    TIMINGS["image size (MB)"] = round(size / 1e6)
    print(f"\n[e2e] image {IMAGE}: {size / 1e6:.0f} MB", flush=True)
    user = _run("docker", "image", "inspect", "-f", "{{.Config.User}}", IMAGE).stdout.strip()
    assert user and not user.startswith("0"), f"the image runs as {user!r}, not a non-root user"
    # Nothing from the build host in the final stage: no wheels, no compilers.
    listing = _run("docker", "run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                   "ls /wheels /src /build 2>&1; command -v gcc cc || echo no-compiler").stdout
    assert "no-compiler" in listing and "No such file" in listing, listing
    return IMAGE


def _project_objects(run_dir: Path) -> dict:
    project = json.loads((run_dir / "cluster.json").read_text())["project"]
    label = f"label=com.docker.compose.project={project}"  # v1 and v2 both label everything
    return {kind: _run("docker", *cmd, "--filter", label).stdout.split()
            for kind, cmd in (("containers", ("ps", "-aq")), ("networks", ("network", "ls", "-q")),
                              ("volumes", ("volume", "ls", "-q")))}


def _up_args(run_dir: Path, max_trials: int, epochs: int) -> list[str]:
    return ["up", "--backend", "compose", "--example", "pima-optimizer", "--max-trials", str(max_trials),
            "--epochs", str(epochs), "--workers", "2", "--image", IMAGE, "--dir", str(run_dir)]


def _completed(run_dir: Path, cwd: Path) -> list[dict]:
    done = run_cli("results", "--dir", str(run_dir), "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["trials"]


@pytest.fixture(params=list(COMPOSE_TOOLS), ids=["compose-v2", "compose-v1"])
def compose_tool(request, docker_engine, monkeypatch):
    """Each compose tool in turn, forced for `up` and every command after it (TUNECLUSTER_COMPOSE)."""
    tool = request.param
    if not _tool_runs(tool):
        pytest.skip(f"`{tool} version` does not run here; {COMPOSE_TOOLS[tool]}")
    monkeypatch.setenv(COMPOSE_ENV, tool)
    return tool


def test_search_pull_and_down(compose_tool, image, tmp_path):
    run_dir = tmp_path / "run"
    started = time.time()
    done = run_cli(*_up_args(run_dir, 3, 1), cwd=tmp_path, timeout=900)
    _timed(f"search, 3 trials x 1 epoch, 2 workers ({compose_tool})", started)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "search ended" in done.stdout and "tunecluster pull" in done.stdout
    assert f"({compose_tool}, image {IMAGE})" in done.stdout, done.stdout[:2000]
    token = (run_dir / "secrets" / "token").read_text().strip()
    assert token not in done.stdout + done.stderr
    assert oct((run_dir / "secrets" / "token").stat().st_mode)[-3:] == "600"

    trials = _completed(run_dir, tmp_path)
    assert len(trials) == 3 and all(t["status"] == "COMPLETED" for t in trials), trials
    # results.csv is written here from the copied results.json: the chief's own, byte for byte
    compose_run = ComposeRun.of(RunDir(run_dir))
    chief = compose_run.containers()["chief"]["Id"]
    (tmp_path / "chief").mkdir()
    assert copy_path(chief, f"{compose_run.volume_dir}/results.csv", tmp_path / "chief", "results.csv")
    assert (run_dir / "results.csv").read_text() == (tmp_path / "chief" / "results.csv").read_text()

    status = run_cli("status", "--dir", str(run_dir), "--format", "json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["backend"] == "compose" and state["finished"] is True
    roles = {r["name"]: r for r in state["roles"]}
    assert set(roles) == {"chief", "worker-0", "worker-1"}
    assert all(r["exit_code"] == 0 for r in roles.values()), roles
    assert roles["worker-1"]["tuner_id"] == "tuner1"
    cluster = json.loads((run_dir / "cluster.json").read_text())
    assert cluster["compose_command"] == compose_tool.split()
    # v2 names containers project-service-1, v1 project_service_1: found by label either way.
    sep = "-" if compose_tool == "docker compose" else "_"
    assert roles["worker-1"]["instance"] == f"{cluster['project']}{sep}worker-1{sep}1", roles

    # The token reaches the containers as a compose secret the image's user can read.
    secret = _run(*cluster["compose_command"], "-p", cluster["project"], "-f", cluster["compose_file"], "run",
                  "--rm", "--no-deps", "-T", "--entrypoint", "sh", "worker-0", "-c",
                  'id -u; cat "$TUNECLUSTER_TOKEN_FILE"').stdout.split()
    assert secret[0] != "0" and secret[-1] == token, secret[:1]

    logs = run_cli("logs", "worker-0", "--dir", str(run_dir), cwd=tmp_path)
    assert logs.returncode == 0 and logs.stdout.strip(), logs.stderr

    out = tmp_path / "best"
    pulled = run_cli("pull", "--dir", str(run_dir), "--to", str(out), cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert (out / "model.keras").is_file() and (out / "hyperparameters.json").is_file()
    loads = subprocess.run([sys.executable, "-c", "import sys, keras; m = keras.models.load_model(sys.argv[1]); "
                            "print(m.input_shape)", str(out / "model.keras")],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert loads.returncode == 0 and "8" in loads.stdout, loads.stderr[-2000:]

    objects = _project_objects(run_dir)
    assert objects["containers"] and objects["volumes"]
    down = run_cli("down", "--volumes", "--dir", str(run_dir), cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert _project_objects(run_dir) == {"containers": [], "networks": [], "volumes": []}
    assert (run_dir / "logs" / "chief.log").read_text().strip()  # logs kept after down


REWRITER = """
import itertools, json, os
for i in itertools.count():
    with open("/p.tmp", "w") as handle:
        handle.write(json.dumps({"i": i, "pad": "x" * (i % 5000)}))
    os.replace("/p.tmp", "/p.json")
"""


def test_a_file_replaced_while_it_is_copied_out_comes_whole(base_image, tmp_path):
    """`docker cp` takes a file's size when it lists it and its bytes when it reads it: a file
    renamed over in between (the chief rewrites progress.json every second) comes torn. A CI run
    met one as `ReadError: unexpected end of data` at the end of a search; `copy_path` reads again."""
    container = _run("docker", "run", "-d", "--entrypoint", "python3", base_image, "-c", REWRITER).stdout.strip()
    try:
        torn = 0
        for _ in range(30):
            raw = subprocess.run(["docker", "cp", f"{container}:/p.json", "-"], capture_output=True, timeout=60).stdout
            try:
                with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
                    json.loads(archive.extractfile("p.json").read())
            except (tarfile.TarError, ValueError):
                torn += 1
        for _ in range(30):
            assert copy_path(container, "/p.json", tmp_path, "p.json", tries=50)
            json.loads((tmp_path / "p.json").read_text())
    finally:
        _run("docker", "rm", "-f", container, check=False)
    print(f"\n[e2e] {torn} of 30 plain `docker cp` reads of the rewritten file were torn", flush=True)
    assert torn, "the race this test is about did not show: nothing was rewritten while it was read"


def _progress(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wait_mid_trial(run_dir: Path, worker: str, proc, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "up ended before the worker was killed"
        w = (_progress(run_dir).get("workers") or {}).get(worker) or {}
        if w.get("state") == "running" and w.get("trial") and (w.get("epoch") or 0) >= 1:
            return w
        time.sleep(0.2)
    raise AssertionError(f"{worker} never got into a trial: {_progress(run_dir)}")


def test_killed_workers_come_back_and_every_trial_completes(image, tmp_path, monkeypatch):
    monkeypatch.delenv(COMPOSE_ENV, raising=False)  # the tool `up` picks by itself
    expected = next((tool for tool in COMPOSE_TOOLS if _tool_runs(tool)), None)
    run_dir = tmp_path / "run"
    log = open(tmp_path / "up.log", "w")
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "tunecluster", *_up_args(run_dir, 4, 40)], cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200"})
    try:
        project = None
        killed = _wait_mid_trial(run_dir, "tuner0", proc)
        project = json.loads((run_dir / "cluster.json").read_text())["project"]
        containers = {name: _run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                                 "--filter", f"label=com.docker.compose.service={name}").stdout.strip()
                      for name in ("worker-0", "worker-1")}
        _run("docker", "kill", containers["worker-0"])  # Docker turns its restart policy off: `up` restarts it
        print(f"\n[e2e] docker kill worker-0 in trial {killed['trial']} epoch {killed['epoch']}", flush=True)
        second = _wait_mid_trial(run_dir, "tuner1", proc)
        pid = _run("docker", "inspect", "-f", "{{.State.Pid}}", containers["worker-1"]).stdout.strip()
        _run("kill", "-9", pid)  # a crash: Docker's `restart: on-failure` brings it back
        print(f"[e2e] kill -9 of worker-1's process in trial {second['trial']} epoch {second['epoch']}", flush=True)
        code = proc.wait(900)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    _timed(f"search with 2 killed workers, 4 trials x 40 epochs ({expected})", started)
    output = (tmp_path / "up.log").read_text()
    assert code == 0, output[-4000:]
    assert json.loads((run_dir / "cluster.json").read_text())["compose_command"] == expected.split()
    assert "worker-0 exited with code 137; starting it again (same id tuner0" in output, output[-4000:]
    trials = _completed(run_dir, tmp_path)
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials), trials
    assert killed["trial"] in {t["trial_id"] for t in trials}
    restarts = {r["name"]: r["restarts"] for r in json.loads((run_dir / "cluster.json").read_text())["roles"]}
    assert restarts["worker-0"] >= 1 and restarts["worker-1"] >= 1, restarts
    down = run_cli("down", "--volumes", "--dir", str(run_dir), cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert _project_objects(run_dir) == {"containers": [], "networks": [], "volumes": []}


# the scripts of the local chaos test, without the kills (random_search.py is left out: custom_run_trial.py is
# the same RandomSearch with a run_trial of its own)
@pytest.mark.parametrize("name", ["pima_optimizer.py", "pima_units.py", "pima_layers.py", "pima_comprehensive.py",
                                  "hyperband.py", "custom_run_trial.py"])
def test_an_unmodified_script_runs_on_compose(name, image, tmp_path, monkeypatch):
    """`up --script` on compose: the script's folder (with the CSV, passed as an absolute path that
    `up` rewrites for the containers) is copied into the run's input, every container runs the
    script there; the search completes, `get_best_*` after `search()` answers in every role, and
    the exported model comes back with `pull`."""
    from keras_tuner_scripts import ALL, TUTORIAL
    from tunecluster.tuning.examples import csv_path

    monkeypatch.delenv(COMPOSE_ENV, raising=False)
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / name).write_text(ALL[name])
    shutil.copyfile(csv_path(), folder / "diabetes.csv")
    run_dir = tmp_path / "run"
    started = time.time()
    done = run_cli("up", "--backend", "compose", "--script", str(folder / name), "--workers", "2", "--image", IMAGE,
                   "--dir", str(run_dir), "--", str(folder / "diabetes.csv"), *(("3", "1") if name in TUTORIAL else ()),
                   cwd=tmp_path, timeout=900)
    _timed(f"--script {name}, 2 workers", started)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    compose_file = (run_dir / "docker-compose.yml").read_text()
    assert f"/tunecluster/input/code/{name}" in compose_file and "- diabetes.csv" in compose_file
    trials = _completed(run_dir, tmp_path)
    assert len(trials) >= 3 and all(t["status"] == "COMPLETED" for t in trials), trials
    lines = {}
    for role in ("chief", "worker-0", "worker-1"):
        logs = run_cli("logs", role, "--dir", str(run_dir), cwd=tmp_path)
        assert logs.returncode == 0, logs.stderr
        found = [line for line in logs.stdout.splitlines() if line.startswith("BEST ")]
        assert found, f"{role} printed no BEST line:\n{logs.stdout[-2000:]}"
        lines[role] = json.loads(found[-1][5:])["values"]
    assert lines["chief"] == lines["worker-0"] == lines["worker-1"], lines
    out = tmp_path / "best"
    pulled = run_cli("pull", "--dir", str(run_dir), "--to", str(out), cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert (out / "model.keras").is_file()
    hyperparameters = json.loads((out / "hyperparameters.json").read_text())
    assert {k: v for k, v in lines["chief"].items() if not k.startswith("tuner/")} == hyperparameters
    down = run_cli("down", "--volumes", "--dir", str(run_dir), cwd=tmp_path)
    assert down.returncode == 0, down.stderr
