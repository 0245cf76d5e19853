"""The compose backend: `tunecluster up --backend compose` and the commands that follow such a run
(status, logs, results, pull, down), driving `docker compose` (v2) or `docker-compose` (v1) and the
docker CLI (see `project.py` for what the run folder holds).

A worker container that exits with an error while the search runs is started again by Docker
(`restart: on-failure`) or, when Docker will not (a `docker kill` turns the restart policy off for
that container), by `up` itself: same container, same KERASTUNER_TUNER_ID, so the oracle hands it
its own trial back.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, TextIO

from tunecluster.backends.base import Backend, DownOptions, RenderOptions, Say, Session, UpOptions
from tunecluster.backends.compose import render
from tunecluster.backends.compose.docker_cli import (build_image, check_engine, check_image, compose_command,
                                                     docker, last_line)
from tunecluster.backends.compose.inputs import stage_script, write_inputs
from tunecluster.backends.compose.project import SYNCED, ComposeRun, remove_project
from tunecluster.backends.image_record import recorded_image
from tunecluster.backends.run_folder import print_log_file, run_dir_for
from tunecluster.backends.status import ClusterStatus, RoleStatus
from tunecluster.backends.verdict import Outcome
from tunecluster.cluster.plan import default_tf_threads
from tunecluster.cluster.run_secrets import RunSecrets
from tunecluster.core import env as role_env
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.core.network import port_in_use
from tunecluster.core.rundir import RunDir, read_json, write_atomic, write_json
from tunecluster.tuning.spec import Experiment

MAX_RESTARTS = 3  # restarts `up` itself gives one worker (Docker's own policy aside)


def compose_options(spec: Experiment, run: RunDir, image: str, port: Optional[int],
                    gpus: Optional[str], script: tuple[str, ...] = ()) -> render.ComposeOptions:
    return render.ComposeOptions(run_root=run.root, image=image, port=port or spec.cluster.port,
                                 gpus=render.parse_gpus(gpus), user=render.container_user(),
                                 tf_threads=default_tf_threads(spec.cluster.workers), script=script)


def up_error(output: str, port: Optional[int], image: str) -> Exception:
    """The one line for a failed `compose up`."""
    lowered = output.lower()
    if "port is already allocated" in lowered or "address already in use" in lowered:
        return UsageError(f"port {port} on 127.0.0.1 is in use; pass another --port or leave it out")
    if "no such image" in lowered or "pull access denied" in lowered or "manifest unknown" in lowered:
        return UsageError(f"image {image} not found in the Docker engine; build it with `docker build -t {image} .`")
    return RunFailure(f"compose up failed: {last_line(output)}")


class ComposeSession(Session):
    """What `up` watches while the search runs: the containers' states (at most once a second),
    the progress file copied out of the volume, and workers to start again."""

    def __init__(self, cluster: ComposeRun, say: Say, interval: float = 1.0, gone_grace: float = 30.0):
        self.cluster = cluster
        self.run = cluster.run
        self.say = say
        self.interval = interval
        self.gone_grace = gone_grace
        self._checked = 0.0
        self._alive = True
        self._workers_gone_since: Optional[float] = None
        self.failure: Optional[str] = None

    def alive(self) -> bool:
        now = time.time()
        if now - self._checked < self.interval:
            return self._alive and self.failure is None
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
                self.say(f"{name} exited with code {state['ExitCode']}; starting it again "
                         f"(same id {self.cluster.role_ids[name]}, restart {count + 1}/{MAX_RESTARTS})")
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

    def interrupt(self) -> str:
        self.say("interrupted: stopping the containers ...")
        self.cluster.compose("stop")
        self.cluster.record()
        return (f"stopped. Resume with: tunecluster up --backend compose --dir {self.run.root} --resume "
                "(and the same -f SPEC or --example)")

    def outcome(self) -> Outcome:
        """After the chief's exit: let the workers finish, copy the results out."""
        cluster = self.cluster
        logs = f"see `tunecluster logs chief --dir {cluster.run.root}`"
        if self.failure:
            return Outcome(read_json(cluster.run.progress) or {}, None, "did not end", logs_hint=logs,
                           failure=self.failure)
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
        chief = next((r for r in info["roles"] if r["name"] == "chief"), {})
        code = chief.get("exit_code")
        return Outcome(read_json(cluster.run.progress) or {}, code,
                       f"exited with code {code}" if code is not None else "did not exit",
                       chief_error=last_line(cluster.logs("chief", 50), "(no log)") if code else "",
                       logs_hint=f"see `tunecluster logs ROLE --dir {cluster.run.root}`",
                       failed_roles=[r["name"] for r in info["roles"] if r["exit_code"] not in (0, None)])


class ComposeBackend(Backend):
    name = "compose"
    runs_scripts = True  # the script's folder is copied into <run>/input/code (inputs.stage_script)

    def check(self, spec: Experiment, options: UpOptions) -> None:
        if options.script:  # arguments the containers cannot read, a folder too big: before anything is written
            stage_script(options.script)

    def render(self, spec: Experiment, options: RenderOptions) -> str:
        run = run_dir_for(options.dir, spec.name)
        doc = render.render_compose(spec, compose_options(spec, run, options.image or render.DEFAULT_IMAGE,
                                                          options.port, options.gpus))
        return render.compose_yaml(doc, render.project_name(spec.name, run.root))

    def apply_options(self, spec: Experiment, options: UpOptions) -> tuple[Experiment, UpOptions]:
        """--image, --gpus and --build as they are; without --image (and --build), the image
        `tunecluster build` recorded for the project (its local tag), else tunecluster:<version>."""
        render.parse_gpus(options.gpus)  # a bad --gpus before anything is written
        if options.image is None and not options.build:  # (--build makes tunecluster:<version>)
            built = recorded_image(options.project, pushed=False)
            if built:
                options = replace(options, image=built)
        return spec, options

    def up(self, spec: Experiment, run: RunDir, options: UpOptions, say: Say) -> Optional[Session]:
        image = options.image or render.DEFAULT_IMAGE
        check_engine()
        command = compose_command()
        if options.build:
            build_image(image, say)
        check_image(image)
        compose = compose_options(spec, run, image, options.port, options.gpus, options.script)
        if compose.port and port_in_use("127.0.0.1", compose.port):
            raise UsageError(f"port {compose.port} on 127.0.0.1 is in use; pass another --port, or leave it out "
                             "(the oracle then stays inside the compose network)")
        project = render.project_name(spec.name, run.root)
        if not options.resume:
            leftovers = remove_project(project, volumes=True)
            if leftovers:
                say(f"removed what an earlier run in {run.root} left: {', '.join(leftovers)}")
        compose_file = run.root / render.COMPOSE_FILE
        write_inputs(run, spec, options.script)
        RunSecrets(run.root, owner_uid=render.IMAGE_UID).ensure_token(os.environ.get(role_env.TOKEN))
        doc = render.render_compose(spec, compose)
        write_atomic(compose_file, render.compose_yaml(doc, project))
        run.progress.unlink(missing_ok=True)
        info = {"backend": self.name, "experiment": spec.name, "project": project, "image": image,
                "compose_command": command, "compose_file": str(compose_file),
                "chief_address": (f"127.0.0.1:{compose.port}" if compose.port
                                  else f"chief:{render.CONTAINER_PORT} (inside the compose network)"),
                "volume_path": render.run_dir_in_container(spec.name),
                "role_ids": {name: service["environment"][role_env.TUNER_ID]
                             for name, service in doc["services"].items()},
                "roles": []}
        write_json(run.cluster, info)
        cluster = ComposeRun(run, info)
        say(f"tunecluster: {spec.name} ({spec.tuner.kind}, {spec.tuner.max_trials} trials, "
            f"{spec.cluster.workers} workers) as compose project {project} ({' '.join(command)}, "
            f"image {image}); files in {run.root}")
        done = cluster.compose("up", "-d", *(["--force-recreate"] if options.resume else []))
        if done.returncode != 0:
            cluster.record()
            raise up_error(done.stderr + done.stdout, compose.port, image)
        cluster.record()
        if options.detach:
            say(f"detached; follow with `tunecluster status --dir {run.root}`")
            return None
        return ComposeSession(cluster, say)

    def best_hint(self, run: RunDir, spec: Experiment) -> str:
        info = read_json(run.cluster) or {}
        what, name = (("best configuration", "hyperparameters.json") if spec.run_trial
                      else ("best model", "model.keras"))
        return (f"{what}: {info.get('volume_path')}/best/{name} on the volume of {info.get('project')}; "
                f"copy it out with `tunecluster pull --dir {run.root} --to best`")

    @staticmethod
    def _run(run: RunDir) -> ComposeRun:
        cluster = ComposeRun.of(run)
        if cluster is None:
            raise UsageError(f"{run.root} holds no compose run (its cluster.json names another backend)")
        return cluster

    def status(self, run: RunDir) -> ClusterStatus:
        info = self._run(run).refresh()
        roles = [RoleStatus(r["name"], r["tuner_id"], r["state"], r["exit_code"], r.get("restarts", 0),
                            pid=r.get("pid"), instance=r.get("container"),
                            problem=f"health: {r['health']}" if r.get("health") == "unhealthy" else None)
                 for r in info["roles"]]
        return ClusterStatus.of(run, self.name, roles, experiment=info.get("experiment"),
                                chief_address=info.get("chief_address"),
                                where={"project": info.get("project"), "image": info.get("image")})

    def refresh(self, run: RunDir) -> None:
        self._run(run).refresh()

    def logs(self, run: RunDir, role: str, *, tail: int, follow: bool, out: TextIO) -> None:
        text = self._run(run).logs(role, tail)
        if text is None:  # `down` removed the container: the copy it saved in logs/
            print_log_file(run, role, tail, out)
            return
        out.write(text if text.endswith("\n") or not text else text + "\n")

    def pull(self, run: RunDir, scratch: Path, progress=None) -> RunDir:
        cluster = self._run(run)
        cluster.copy_out(("best", *SYNCED))  # from the volume, into the run folder first
        if cluster.volume_gone and not run.best_metrics.is_file():
            raise UsageError(f"the volume of {cluster.project} is gone (`down --volumes`) and no model "
                             f"was pulled into {run.root} before")
        return run

    def down(self, run: RunDir, options: DownOptions) -> str:
        if options.keep_volume:
            raise UsageError("--keep-volume is for Kubernetes runs; a compose run keeps its volume "
                             "unless `down --volumes`")
        cluster = self._run(run)
        removed = cluster.down(volumes=options.volumes)
        return (f"removed project {cluster.project}" + (f" (and {', '.join(removed)})" if removed else "")
                + ("" if options.volumes else "; its volume is kept (`down --volumes` removes it)")
                + f"; logs saved in {run.logs}")
