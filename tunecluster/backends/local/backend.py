"""The local backend: the chief and the workers as processes on this machine, on 127.0.0.1.

`up` makes (or keeps, on resume) the run's token and TLS files, renders the ClusterPlan as
processes (`processes.LocalCluster`) and follows them: a role that dies before the search ends is
restarted with the same id (`cluster.max_restarts`); Ctrl-C stops every role and the run can be
resumed with `up --resume`. Everything lives in the run folder: logs, cluster.json, progress.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional, TextIO

from tunecluster.backends.base import Backend, DownOptions, RenderOptions, Say, Session, UpOptions
from tunecluster.backends.local.gpus import local_gpus
from tunecluster.backends.local.processes import LocalCluster
from tunecluster.backends.local.recorded import role_states, stop_recorded
from tunecluster.backends.run_folder import print_log_file
from tunecluster.backends.status import ClusterStatus, RoleStatus
from tunecluster.backends.verdict import Outcome
from tunecluster.cluster.plan import Placement, SecretFiles, build_plan, default_tf_threads
from tunecluster.cluster.run_secrets import RunSecrets
from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError
from tunecluster.core.network import free_port, port_in_use
from tunecluster.core.rundir import RunDir, read_json
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.spec import Experiment

HOST = "127.0.0.1"
EXPORT_WAIT_S = 15.0  # how long the chief may take to leave after the last worker exported


def chief_code_after_workers(cluster: LocalCluster, wait_s: float) -> Optional[int]:
    """The chief's final exit code once the workers are gone: the last worker exported and left,
    and the chief finishes its state and exits by itself within `wait_s`. None: it did not (it
    is still running, or exited to be restarted)."""
    deadline = time.time() + wait_s
    code = cluster.chief_final()
    while code is None and time.time() < deadline and cluster.chief_exit() is None:
        time.sleep(0.1)
        code = cluster.chief_final()
    # it may have exited between the last two looks: the exporter and the chief leave together
    return code if code is not None else cluster.chief_final()


def workers_gone(progress: dict, failed: list[str], tail: str, run: RunDir) -> str:
    """Why a run whose workers are all gone did not end, in one line: the export of a complete
    search was lost with its worker (a resume exports it), or the search itself could not go on."""
    export = progress.get("export") or {}
    if export.get("state") == "claimed":  # claimed only once the search is complete (control_service.Finish)
        return (f"every worker exited before the best model was exported ({export.get('by')} was exporting it; "
                f"failed: {', '.join(failed) or 'none'}); the search itself is complete: "
                f"`tunecluster up --dir {run.root} --resume` (with the same -f SPEC or --example) exports it")
    return (f"every worker exited before the search ended ({', '.join(failed) or 'no error code'}); "
            f"last worker error: {tail}")


def local_placement(spec: Experiment, run: RunDir, port: int, say: Say) -> Placement:
    """Where the roles of a local run find everything: the run folder itself, 127.0.0.1."""
    secrets = RunSecrets(run.root)
    if not spec.cluster.insecure:
        secrets.ensure_token(os.environ.get(role_env.TOKEN))
    if spec.cluster.tls:
        secrets.ensure_tls()
    gpus = local_gpus() if spec.cluster.workers_per_gpu else []
    if spec.cluster.workers_per_gpu and not gpus:
        say("cluster.workers_per_gpu is set but this machine shows no GPU "
            "(CUDA_VISIBLE_DEVICES / nvidia-smi); the workers run on the CPU")
    files = SecretFiles(token=str(secrets.token), tls_cert=str(secrets.tls_cert) if spec.cluster.tls else None,
                        tls_key=str(secrets.tls_key) if spec.cluster.tls else None)
    return Placement(spec_path=str(run.spec), run_dir=str(run.root), chief_bind=HOST, chief_host=HOST,
                     port=port, secrets=files, tf_threads=default_tf_threads(spec.cluster.workers), gpus=gpus)


class LocalSession(Session):
    """Follows (and supervises) the processes of one local run."""

    def __init__(self, cluster: LocalCluster, run: RunDir, say: Say):
        self.cluster, self.run, self.say = cluster, run, say

    def _note(self, message: str) -> None:
        self.say(f"[{time.strftime('%H:%M:%S')}] {message}")

    def alive(self) -> bool:
        self.cluster.supervise(search_over=self.run.finished, note=self._note)
        if self.cluster.chief_final() is not None:
            return False
        return not self.cluster.all_workers_gone()

    def interrupt(self) -> str:
        self.say("interrupted: stopping the chief and workers ...")
        self.cluster.stop()
        return (f"stopped. Resume with: tunecluster up --dir {self.run.root} --resume "
                "(and the same -f SPEC or --example)")

    def outcome(self) -> Outcome:
        cluster, run = self.cluster, self.run
        usage_exit = any(c == 2 for n, c in cluster.poll().items() if n != "chief")
        # a worker's usage error: no search will end, so no wait for the chief
        code = chief_code_after_workers(cluster, 0 if usage_exit else EXPORT_WAIT_S)
        logs = f"see {run.logs}"
        if code is None:
            cluster.stop(timeout=5.0)
            codes = cluster.poll()
            failed = [n for n, c in codes.items() if n != "chief" and c]
            usage = [n for n, c in codes.items() if n != "chief" and c == 2]
            tail = cluster.log_tail(failed[0] if failed else "worker-0")
            if usage:
                return Outcome({}, None, "did not end", logs_hint=logs, usage_error=tail.removeprefix("error: "))
            return Outcome({}, None, "did not end", logs_hint=logs,
                           failure=workers_gone(read_json(run.progress) or {}, failed, tail, run))
        cluster.wait_workers(timeout=10.0)
        cluster.stop(timeout=5.0)
        failed_roles = [r["name"] for r in role_states(run)["roles"] if r["exit_code"] not in (0, None)]
        return Outcome(read_json(run.progress) or {}, code, f"exited with code {code}",
                       chief_error=cluster.log_tail("chief") if code else "", logs_hint=logs,
                       failed_roles=failed_roles)

    def close(self) -> None:
        self.cluster.stop(timeout=5.0)


class LocalBackend(Backend):
    name = "local"
    runs_scripts = True

    def render(self, spec: Experiment, options: RenderOptions) -> str:
        raise UsageError("the local backend has nothing to render; use --backend kubernetes or compose")

    def apply_options(self, spec: Experiment, options: UpOptions) -> tuple[Experiment, UpOptions]:
        """--image and --build are refused (the roles are processes of this Python); --gpus is the
        local GPU option: `1` gives each worker a GPU of its own (cluster.workers_per_gpu 1), `all`
        lets every worker see every GPU (the default)."""
        if options.image or options.build:
            flag = "--image" if options.image else "--build"
            raise UsageError(f"{flag}: the local backend runs the roles as processes of this Python, not in an "
                             "image; leave it out, or use --backend compose or kubernetes")
        if options.gpus in (None, ""):
            return spec, options
        if options.gpus == "all":
            return Overrides(workers_per_gpu=0).apply(spec), options
        if options.gpus == "1":
            return Overrides(workers_per_gpu=1).apply(spec), options
        raise UsageError(f"--gpus {options.gpus!r}: the local backend gives each worker one GPU (--gpus 1) or "
                         "lets every worker see every GPU (--gpus all); to share one GPU among several workers "
                         "set cluster.workers_per_gpu")

    def up(self, spec: Experiment, run: RunDir, options: UpOptions, say: Say) -> Optional[Session]:
        port = options.port or spec.cluster.port or free_port(HOST)
        if port_in_use(HOST, port):
            raise UsageError(f"port {port} on {HOST} is in use; pass another --port or leave it out for a free one")
        run.progress.unlink(missing_ok=True)  # a resumed run starts a fresh progress file (its state is in kt/)
        plan = build_plan(spec, local_placement(spec, run, port, say), script=options.script)
        cluster = LocalCluster(plan, run, max_restarts=0 if options.detach else spec.cluster.max_restarts)
        security = "no token (--insecure)" if spec.cluster.insecure else "token"
        search = (f"Keras Tuner script {Path(options.script[0]).name}" if options.script
                  else f"{spec.tuner.kind}, {spec.tuner.max_trials} trials")
        say(f"tunecluster: {spec.name} ({search}, {spec.cluster.workers} workers) in {run.root}")
        cluster.start()
        say(f"chief listening on {HOST}:{port} ({security}{', TLS' if spec.cluster.tls else ''}); logs in {run.logs}")
        if options.detach:
            say(f"detached; follow with `tunecluster status --dir {run.root}` "
                "(roles that die are not restarted without the launcher)")
            return None
        return LocalSession(cluster, run, say)

    def status(self, run: RunDir) -> ClusterStatus:
        recorded = role_states(run)
        roles = [RoleStatus(r["name"], r["tuner_id"], r["state"], r["exit_code"], r.get("restarts", 0),
                            r.get("given_up", False), pid=r.get("pid")) for r in recorded["roles"]]
        return ClusterStatus.of(run, self.name, roles, experiment=recorded.get("experiment"),
                                chief_address=recorded.get("chief_address"),
                                where={"launcher_pid": recorded.get("launcher_pid")})

    def logs(self, run: RunDir, role: str, *, tail: int, follow: bool, out: TextIO) -> None:
        print_log_file(run, role, tail, out)
        if follow:
            self._follow_log(run, role, out)

    @staticmethod
    def _follow_log(run: RunDir, role: str, out: TextIO) -> None:
        """Print what the role writes until it (and every restart of it) has exited."""
        with open(run.log(role), errors="replace") as handle:
            handle.seek(0, 2)
            while True:
                chunk = handle.read()
                if chunk:
                    out.write(chunk)
                    out.flush()
                states = {r["name"]: r["state"] for r in role_states(run)["roles"]}
                if states.get(role) != "running" and not chunk:
                    return
                time.sleep(0.3)

    def pull(self, run: RunDir, scratch: Path, progress=None) -> RunDir:
        return run

    def down(self, run: RunDir, options: DownOptions) -> str:
        if options.volumes:
            raise UsageError("--volumes is for compose runs; a local run keeps everything in its --dir folder")
        if options.keep_volume:
            raise UsageError("--keep-volume is for Kubernetes runs; a local run keeps everything in its --dir folder")
        stopped = stop_recorded(run)
        return f"stopped: {', '.join(stopped)}" if stopped else "nothing was running"

