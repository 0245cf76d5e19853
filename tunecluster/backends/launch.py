"""`tunecluster up` for the local backend: choose the spec, prepare the run directory safely,
start the cluster, follow it live, stop it cleanly, and report the outcome.
"""

from __future__ import annotations

import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console

from tunecluster.ui.live import LiveView
from tunecluster.backends.local.processes import LocalCluster, default_tf_threads, free_port, local_gpus, port_in_use
from tunecluster.cluster.plan import build_plan
from tunecluster.core.rundir import RunDir, read_json, write_atomic
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.tuning.spec import Experiment, dump_spec, load_spec, validate_spec

DEFAULT_SPEC = "tunecluster.yaml"
DEFAULT_RUNS = "tunecluster-runs"


@dataclass
class Overrides:
    workers: Optional[int] = None
    max_trials: Optional[int] = None
    epochs: Optional[int] = None
    tuner: Optional[str] = None
    seed: Optional[int] = None
    backend: Optional[str] = None
    insecure: Optional[bool] = None
    tls: Optional[bool] = None
    confirm: Optional[bool] = None
    confirm_top: Optional[int] = None
    confirm_repeats: Optional[int] = None
    holdout: Optional[float] = None

    def apply(self, spec: Experiment) -> Experiment:
        raw = spec.model_dump(mode="json")
        if self.workers is not None:
            raw["cluster"]["workers"] = self.workers
        if self.backend is not None:
            raw["cluster"]["backend"] = self.backend
        if self.max_trials is not None:
            raw["tuner"]["max_trials"] = self.max_trials
        if self.epochs is not None:
            raw["fit"]["epochs"] = self.epochs
            raw["tuner"]["hyperband"]["max_epochs"] = self.epochs
        if self.tuner is not None:
            raw["tuner"]["kind"] = self.tuner
        if self.seed is not None:
            raw["tuner"]["seed"] = self.seed
        if self.insecure:
            raw["cluster"]["insecure"] = True
        if self.tls:
            raw["cluster"]["tls"] = True
        if self.confirm is not None:
            raw["confirm"]["enabled"] = self.confirm
        if self.confirm_top is not None:
            raw["confirm"]["top"] = self.confirm_top
        if self.confirm_repeats is not None:
            raw["confirm"]["repeats"] = self.confirm_repeats
        if self.holdout is not None:
            raw["data"]["test_fraction"] = self.holdout
        return validate_spec(raw, "command-line options")


def resolve_spec(spec_file: Optional[str], example: Optional[str]) -> tuple[Experiment, str]:
    """The spec to run and where it came from: -f FILE, ./tunecluster.yaml, or an example."""
    from tunecluster.tuning.examples import DEFAULT_EXAMPLE, example_spec

    if spec_file and example:
        raise UsageError("give either -f/--file or --example, not both")
    if spec_file:
        return load_spec(spec_file), spec_file
    if example:
        return example_spec(example), f"example {example}"
    if Path(DEFAULT_SPEC).is_file():
        return load_spec(DEFAULT_SPEC), DEFAULT_SPEC
    return example_spec(DEFAULT_EXAMPLE), f"example {DEFAULT_EXAMPLE} (no {DEFAULT_SPEC} here)"


def preflight(spec: Experiment) -> None:
    """Catch bad input before anything starts or is written: the hypermodel (or run_trial)
    reference and the CSV (its path, header, target column and numeric cells)."""
    from tunecluster.tuning.datasets import read_csv_checked
    from tunecluster.tuning.loader import check_callable_ref

    if spec.run_trial:
        check_callable_ref(spec.run_trial, "run_trial")
    elif not spec.hypermodel:
        raise UsageError('hypermodel: the spec names no hypermodel; set hypermodel: "file.py:function" '
                         '(or run_trial: "file.py:function" to train without a Keras model)')
    else:
        check_callable_ref(spec.hypermodel)
    if spec.data.loader:
        check_callable_ref(spec.data.loader, "data.loader")
    elif spec.data.csv:
        read_csv_checked(spec.data.csv, spec.data.target)


def check_run_dir(run: RunDir, spec: Experiment, *, force: bool, resume: bool) -> None:
    """The checks of `prepare_run_dir` without writing anything (several runs are checked first)."""
    if run.root.exists() and any(run.root.iterdir()):
        if not run.exists():
            raise UsageError(
                f"--dir {run.root} exists and is not a tunecluster run; choose an empty or new folder"
            )
        previous = load_spec(run.spec)
        if resume and previous.name != spec.name:
            raise UsageError(f"--dir {run.root} holds experiment {previous.name!r}, not {spec.name!r}; "
                             "pass the matching spec or another --dir")
        if not resume and not force:
            state = "a finished run" if run.finished() else "an interrupted run"
            hint = "--force to replace it" if run.finished() else "--resume to continue it or --force to replace it"
            raise UsageError(f"--dir {run.root} already holds {state} of {previous.name!r}; "
                             f"pass another --dir, or {hint}")


def prepare_run_dir(run: RunDir, spec: Experiment, *, force: bool, resume: bool) -> Experiment:
    """Refuse to clobber an earlier run; on --resume return the spec the run was started with."""
    if run.root.exists() and any(run.root.iterdir()):
        if not run.exists():
            raise UsageError(
                f"--dir {run.root} exists and is not a tunecluster run; choose an empty or new folder"
            )
        previous = load_spec(run.spec)
        if resume:
            if previous.name != spec.name:
                raise UsageError(
                    f"--dir {run.root} holds experiment {previous.name!r}, not {spec.name!r}; "
                    "pass the matching spec or another --dir"
                )
            if run.finished():
                raise UsageError(f"the run in {run.root} already finished; nothing to resume "
                                 "(use --force to start it over)")
            return previous
        if not force:
            state = "a finished run" if run.finished() else "an interrupted run"
            hint = "--force to replace it" if run.finished() else "--resume to continue it or --force to replace it"
            raise UsageError(f"--dir {run.root} already holds {state} of {previous.name!r}; "
                             f"pass another --dir, or {hint}")
        shutil.rmtree(run.root)
    elif resume:
        raise UsageError(f"--resume: {run.root} holds no run to resume")
    run.root.mkdir(parents=True, exist_ok=True)
    write_atomic(run.spec, dump_spec(spec))
    return spec


def role_security_env(spec: Experiment, run: RunDir) -> tuple[dict, dict]:
    """Make (or keep, on resume) the run's token and TLS files; the chief's and workers' variables."""
    import os

    from tunecluster.core import env as role_env
    from tunecluster.cluster.security import RunSecrets

    secrets = RunSecrets(run.root)
    if not spec.cluster.insecure:
        secrets.ensure_token(os.environ.get(role_env.TOKEN))
    if spec.cluster.tls:
        secrets.ensure_tls()
    return secrets.role_env(insecure=spec.cluster.insecure, tls=spec.cluster.tls)


def chief_code_after_workers(cluster, wait_s: float) -> Optional[int]:
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


def up_local(spec: Experiment, run: RunDir, *, port: Optional[int], console: Console,
             detach: bool = False) -> int:
    """Run the search with local processes; return the exit code for the CLI."""
    from tunecluster.backends.local.processes import role_states

    host = "127.0.0.1"
    port = port or spec.cluster.port or free_port(host)
    if port_in_use(host, port):
        raise UsageError(f"port {port} on {host} is in use; pass another --port or leave it out for a free one")
    # A resumed run restarts with a fresh progress file (the oracle state lives in kt/).
    run.progress.unlink(missing_ok=True)
    chief_env, worker_env = role_security_env(spec, run)
    gpus = local_gpus() if spec.cluster.workers_per_gpu else None
    if spec.cluster.workers_per_gpu and not gpus:
        console.print("cluster.workers_per_gpu is set but this machine shows no GPU "
                      "(CUDA_VISIBLE_DEVICES / nvidia-smi); the workers run on the CPU", highlight=False)
    plan = build_plan(spec, spec_path=str(run.spec), run_dir=str(run.root), chief_bind=host,
                      chief_host=host, port=port, tf_threads=default_tf_threads(spec.cluster.workers),
                      chief_env=chief_env, worker_env=worker_env, gpus=gpus)
    cluster = LocalCluster(plan, run, max_restarts=0 if detach else spec.cluster.max_restarts)
    started = time.time()
    security = "no token (--insecure)" if spec.cluster.insecure else "token"
    console.print(f"tunecluster: {spec.name} ({spec.tuner.kind}, {spec.tuner.max_trials} trials, "
                  f"{spec.cluster.workers} workers) in {run.root}", highlight=False)
    cluster.start()
    console.print(f"chief listening on {host}:{port} ({security}{', TLS' if spec.cluster.tls else ''}); "
                  f"logs in {run.logs}", highlight=False)
    if detach:
        console.print(f"detached; follow with `tunecluster status --dir {run.root}` "
                      "(roles that die are not restarted without the launcher)", highlight=False)
        return 0

    def note(message: str) -> None:
        console.print(f"[{time.strftime('%H:%M:%S')}] {message}", highlight=False)

    def alive() -> bool:
        cluster.supervise(search_over=run.finished, note=note)
        if cluster.chief_final() is not None:
            return False
        return not cluster.all_workers_gone()

    def on_sigterm(*_):  # `tunecluster down`, or a service manager: stop like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # Ctrl-C must stop the cluster even when `up` was started where SIGINT is ignored (a shell's
    # background job: Python then installs no KeyboardInterrupt handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        LiveView(run, console).follow(alive)
        usage_exit = any(c == 2 for n, c in cluster.poll().items() if n != "chief")
        code = chief_code_after_workers(cluster, 0 if usage_exit else 15)  # a worker's usage error: no search will end
        if code is None:
            cluster.stop(timeout=5.0)
            failed = [n for n, c in cluster.poll().items() if n != "chief" and c]
            usage = [n for n, c in cluster.poll().items() if n != "chief" and c == 2]
            tail = cluster.log_tail(failed[0] if failed else 'worker-0')
            if usage:
                raise UsageError(tail.removeprefix("error: "))
            raise RunFailure(f"every worker exited before the search ended ({', '.join(failed) or 'no error code'}); "
                             f"last worker error: {tail}")
        cluster.wait_workers(timeout=10.0)
    except KeyboardInterrupt:
        console.print("\ninterrupted: stopping the chief and workers ...", highlight=False)
        cluster.stop()
        console.print(f"stopped. Resume with: tunecluster up --dir {run.root} --resume", highlight=False)
        return 130
    finally:
        cluster.stop(timeout=5.0)
    elapsed = time.time() - started
    states = role_states(run)
    failed_roles = [r["name"] for r in states["roles"] if r["exit_code"] not in (0, None)]
    progress = read_json(run.progress) or {}
    console.print(f"search ended in {elapsed:.1f} s (chief exit code {code})", highlight=False)
    if failed_roles:
        console.print(f"roles that failed: {', '.join(failed_roles)} (see {run.logs})", highlight=False)
    if progress.get("search_failed"):
        raise RunFailure(f"the search stopped: {progress['search_failed']}")
    export = progress.get("export") or {}
    if export.get("state") == "failed":
        raise RunFailure(f"exporting the best model failed: {export.get('message')}")
    if code == 2:
        raise UsageError(cluster.log_tail("chief").removeprefix("error: "))
    if code != 0:
        raise RunFailure(f"the chief exited with code {code}: {cluster.log_tail('chief')}")
    if not progress.get("finished"):
        raise RunFailure(f"the search did not finish; see {run.logs}")
    return 0
