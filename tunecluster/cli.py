"""The `tunecluster` command line (Typer): parses options, calls the modules that do the work,
prints with Rich. Every error is one line on stderr and a non-zero exit code (2 for bad input,
1 for a failure while running); `--debug` shows the traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from tunecluster import __version__
from tunecluster.core.errors import TuneclusterError, UsageError

app = typer.Typer(
    help="Run Keras Tuner searches on many workers: a chief oracle over gRPC, workers running "
    "trials, on this machine (local processes), docker compose or Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True)
_state = {"debug": False}


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class StatusFormat(str, Enum):
    table = "table"
    json = "json"


class TunerKind(str, Enum):
    random = "random"
    grid = "grid"
    bayesian = "bayesian"
    hyperband = "hyperband"


class BackendName(str, Enum):
    local = "local"
    compose = "compose"
    kubernetes = "kubernetes"


def _errors_to_exit(func):
    """Turn tunecluster errors into one line and an exit code (a traceback only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TuneclusterError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if _state["debug"]:
                raise
            err_console.print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                              highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


def _version(value: bool):
    if value:
        console.print(f"tunecluster {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    _state["debug"] = debug


def _run_dir(dir: Optional[Path], name: str):
    from tunecluster.backends.launch import DEFAULT_RUNS
    from tunecluster.core.rundir import RunDir

    return RunDir(dir if dir is not None else Path(DEFAULT_RUNS) / name)


def _existing_run(dir: Optional[Path]):
    """The run named by --dir, or the only run under ./tunecluster-runs."""
    from tunecluster.backends.launch import DEFAULT_RUNS
    from tunecluster.core.rundir import RunDir

    if dir is not None:
        return RunDir(dir).require_run()
    runs = sorted(p for p in Path(DEFAULT_RUNS).glob("*") if (p / "spec.yaml").is_file())
    if len(runs) == 1:
        return RunDir(runs[0])
    if not runs:
        raise UsageError(f"no run found under ./{DEFAULT_RUNS}; pass --dir PATH")
    raise UsageError(f"several runs under ./{DEFAULT_RUNS} ({', '.join(p.name for p in runs)}); pass --dir PATH")


def _backend_of(run) -> str:
    from tunecluster.core.rundir import read_json

    return (read_json(run.cluster) or {}).get("backend", "local")


def _kube(run=None, context: Optional[str] = None, namespace: Optional[str] = None,
          kubeconfig: Optional[str] = None, spec=None):
    """Connect to the cluster of a Kubernetes run (its recorded context and namespace) or of a spec."""
    from tunecluster.core.rundir import read_json
    from tunecluster.backends.kubernetes.client import connect

    recorded = (read_json(run.cluster) or {}) if run is not None else {}
    ns = namespace or recorded.get("namespace") or (spec.cluster.kubernetes.namespace if spec else None)
    return connect(context or recorded.get("context"), ns, kubeconfig)


KUBE_CONTEXT = typer.Option(None, "--context", help="Kubernetes: kubeconfig context (default: the current one).")
KUBE_NAMESPACE = typer.Option(None, "--namespace", "-n", help="Kubernetes: namespace (default: "
                              "cluster.kubernetes.namespace, else the context's).")
KUBECONFIG = typer.Option(None, "--kubeconfig", help="Kubernetes: kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")


@app.command()
@_errors_to_exit
def init(
    example: str = typer.Option("pima", "--example", help="pima (= pima-comprehensive) or a phase: "
                                "pima-optimizer, pima-units, pima-layers, pima-comprehensive; or pima-forest "
                                "(a scikit-learn forest through run_trial: writes forest.py)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
):
    """Write an editable tunecluster.yaml, model.py (or forest.py) and the example CSV into the current folder."""
    from tunecluster.tuning.examples import write_template

    for path in write_template(Path.cwd(), example, force=force):
        console.print(f"wrote {path.name}")
    console.print("next: edit tunecluster.yaml / model.py, then run `tunecluster up`")


@app.command()
@_errors_to_exit
def up(
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="Spec file (default: ./tunecluster.yaml, "
                                        "else the embedded pima-comprehensive example)."),
    example: Optional[str] = typer.Option(None, "--example", help="Run an embedded example instead: "
                                          "pima-optimizer, pima-units, pima-layers, pima-comprehensive, "
                                          "pima-all (the four one after another, with the tutorial's claims "
                                          "beside this run's findings; --dir holds one folder per phase), or "
                                          "pima-forest (a scikit-learn forest through run_trial, no Keras model)."),
    backend: Optional[BackendName] = typer.Option(None, "--backend", help="Where to run (default: the spec's cluster.backend)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Number of workers."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory (default: ./tunecluster-runs/<name>)."),
    max_trials: Optional[int] = typer.Option(None, "--max-trials", min=1, help="Override tuner.max_trials."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Override fit.epochs (and Hyperband's max_epochs)."),
    tuner: Optional[TunerKind] = typer.Option(None, "--tuner", help="Override tuner.kind."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override tuner.seed."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="Oracle port (default: a free one)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier run in --dir."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --dir."),
    detach: bool = typer.Option(False, "--detach", help="Start the cluster and return at once "
                                "(roles that die are then not restarted)."),
    insecure: bool = typer.Option(False, "--insecure", help="Serve the oracle without a token, so "
                                  "unmodified Keras Tuner workers can join (anyone who reaches the port "
                                  "can drive the search)."),
    tls: bool = typer.Option(False, "--tls", help="Encrypt the oracle port with a certificate made for this run."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Kubernetes: also run TensorBoard on the volume."),
    image: Optional[str] = typer.Option(None, "--image", help="compose: the tunecluster image (default: tunecluster:<version>)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="compose: GPUs reserved per worker, a number or 'all'."),
    build: bool = typer.Option(False, "--build", help="compose: build --image from this checkout's Dockerfile first."),
    confirm_top: Optional[int] = typer.Option(None, "--confirm-top", min=1, help="Retrain the K best "
                                              "configurations after the search (default: confirm.top, 3)."),
    confirm_repeats: Optional[int] = typer.Option(None, "--confirm-repeats", min=1, help="Trainings per "
                                                  "confirmed configuration, fresh seeds (default: confirm.repeats, 3)."),
    no_confirm: bool = typer.Option(False, "--no-confirm", help="Skip the confirmation stage."),
    holdout: Optional[float] = typer.Option(None, "--holdout", min=0.0, max=0.8, help="Hold out this "
                                            "fraction of the rows as a test split the search never sees "
                                            "(data.test_fraction; the examples default to 0, the tutorial's split)."),
):
    """Start a chief and workers, follow the search live, then retrain the best configurations
    with fresh seeds (the confirmation stage) and print the results table."""
    from tunecluster.backends.launch import Overrides, check_run_dir, preflight, resolve_spec
    from tunecluster.tuning.examples import ALL_PHASES, PHASES, example_spec

    if force and resume:
        raise UsageError("give either --force or --resume, not both")
    overrides = Overrides(workers, max_trials, epochs, tuner.value if tuner else None, seed,
                          backend.value if backend else None, insecure, tls,
                          confirm=False if no_confirm else None, confirm_top=confirm_top,
                          confirm_repeats=confirm_repeats, holdout=holdout)
    options = dict(force=force, resume=resume, workers=workers, port=port, detach=detach, context=context,
                   namespace=namespace, kubeconfig=kubeconfig, tensorboard=tensorboard, image=image,
                   gpus=gpus, build=build)
    if example == ALL_PHASES:
        if file:
            raise UsageError("give either -f/--file or --example, not both")
        if detach:
            raise UsageError(f"--example {ALL_PHASES} runs the phases one after another; it cannot --detach")
        root = dir if dir is not None else Path("tunecluster-runs") / ALL_PHASES
        phases = []
        for name in PHASES:  # check every phase (spec, data, run folder) before anything runs
            spec = overrides.apply(example_spec(name))
            run = _run_dir(root / name, name)
            preflight(spec)
            if not (resume and run.finished()):
                check_run_dir(run, spec, force=force, resume=resume and run.exists())
            phases.append((spec, run))
        outcomes = []
        for spec, run in phases:
            if resume and run.finished():
                console.print(f"{spec.name}: already finished in {run.root}", highlight=False)
                outcomes.append((spec.name, run, 0))
                continue
            console.rule(f"{spec.name}")
            code = _up_one(spec, run, f"example {spec.name}", dict(options, resume=resume and run.exists()))
            outcomes.append((spec.name, run, code))
            if code != 0:
                break
        _print_phase_summary(outcomes, root)
        raise typer.Exit(max(code for *_, code in outcomes))
    spec, source = resolve_spec(str(file) if file else None, example)
    spec = overrides.apply(spec)
    run = _run_dir(dir, spec.name)
    preflight(spec)
    raise typer.Exit(_up_one(spec, run, source, options))


def _up_one(spec, run, source: str, o: dict) -> int:
    """Bring one experiment's cluster up, follow it, print its results; return the exit code."""
    import signal

    from tunecluster.backends.launch import Overrides, prepare_run_dir, up_local

    # Ctrl-C (or `kill -INT`) stops every backend's run even when `up` runs as a shell's background
    # job, where SIGINT starts ignored and Python installs no KeyboardInterrupt handler of its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if spec.cluster.backend == "kubernetes":
        from tunecluster.backends.kubernetes.launcher import up_kubernetes

        cluster = _kube(None, o["context"], o["namespace"], o["kubeconfig"], spec)  # fail on a bad kubeconfig before writing
        spec = prepare_run_dir(run, spec, force=o["force"], resume=o["resume"])
        if o["workers"] is not None and o["resume"]:
            spec = Overrides(workers=o["workers"]).apply(spec)
        console.print(f"spec: {source}", highlight=False)
        code = up_kubernetes(spec, run, cluster, console=console, detach=o["detach"],
                             tensorboard=o["tensorboard"] or None)
        if code == 0 and not o["detach"]:
            _print_results(run, Format.table, limit=UP_TABLE_ROWS)
            what = "best configuration" if spec.run_trial else "best model"
            console.print(f"{what} on the volume; copy it with `tunecluster pull --dir {run.root} --to DIR`",
                          highlight=False)
        return code
    spec = prepare_run_dir(run, spec, force=o["force"], resume=o["resume"])
    if o["workers"] is not None and o["resume"]:
        spec = Overrides(workers=o["workers"]).apply(spec)
    console.print(f"spec: {source}", highlight=False)
    if spec.cluster.backend == "compose":
        from tunecluster.backends.compose.render import DEFAULT_IMAGE
        from tunecluster.backends.compose.project import best_model_hint, up_compose

        code = up_compose(spec, run, image=o["image"] or DEFAULT_IMAGE, port=o["port"], gpus=o["gpus"],
                          console=console, detach=o["detach"], resume=o["resume"], build=o["build"])
    else:
        code = up_local(spec, run, port=o["port"], console=console, detach=o["detach"])
    if code == 0 and not o["detach"]:
        _print_results(run, Format.table, limit=UP_TABLE_ROWS)
        if spec.cluster.backend == "compose":
            console.print(best_model_hint(run, spec), highlight=False)
        elif spec.run_trial:  # no model: the best configuration and its scores
            console.print(f"best configuration: {run.best_hyperparameters} (scores: {run.best_metrics})"
                          if run.best_metrics.exists() else "nothing exported (no completed trial)", highlight=False)
        else:
            console.print(f"best model: {run.best_model}" if run.best_model.exists() else
                          "no model exported (no completed trial)", highlight=False)
    return code


def _print_phase_summary(outcomes: list, root: Path) -> None:
    """`up --example pima-all`: the tutorial's claim beside this run's confirmed winner, per phase."""
    from tunecluster.core.rundir import write_json
    from tunecluster.tuning.examples import TUTORIAL_CLAIMS
    from tunecluster.tuning.phases import phase_summary

    rows = [phase_summary(name, run, code, TUTORIAL_CLAIMS.get(name, {})) for name, run, code in outcomes]
    table = Table(title="Pima tutorial, phase by phase: its claims beside this run (winner = best "
                  "confirmed configuration)")
    for column in ("phase", "tutorial's claim", "this run's winner", "confirmed val", "search score",
                   "test", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["phase"], row["claim"], row["winner"], row["confirmed"], row["search_score"],
                      row["test"], row["note"])
    width = console.width
    if not console.is_terminal:
        console.width = max(width, 160)
    try:
        console.print(table)
    finally:
        console.width = width
    write_json(root / "pima-all.json", {"phases": rows})
    console.print(f"summary: {root / 'pima-all.json'}", highlight=False)


@app.command()
@_errors_to_exit
def render(
    backend: BackendName = typer.Option(BackendName.kubernetes, "--backend", help="What to render for."),
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="Spec file (default: ./tunecluster.yaml, "
                                        "else the embedded pima-comprehensive example)."),
    example: Optional[str] = typer.Option(None, "--example", help="Render an embedded example instead."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Number of workers."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Namespace of the objects "
                                            "(default: cluster.kubernetes.namespace, else 'default')."),
    include_secret: bool = typer.Option(False, "--include-secret", help="Also print the Secret with a "
                                        "freshly generated oracle token (keep the output private)."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Add the TensorBoard Deployment and Service."),
    rbac: bool = typer.Option(False, "--rbac", help="Print the Role (and RoleBinding for --user) a user "
                              "needs to run tunecluster in the namespace, instead of the experiment."),
    user: Optional[str] = typer.Option(None, "--user", help="With --rbac: bind the Role to this user."),
    image: Optional[str] = typer.Option(None, "--image", help="The tunecluster image (default: compose "
                                        "tunecluster:<version>, kubernetes cluster.kubernetes.image)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="compose: run directory the file refers to "
                                       "(default: ./tunecluster-runs/<name>)."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="compose: publish the oracle on 127.0.0.1:PORT."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="compose: GPUs reserved per worker, a number or 'all'."),
):
    """Print what `up` would create, writing nothing: Kubernetes objects as YAML (`kubectl apply
    -f -` works on it) or the compose file (`render --backend compose > compose.yml`)."""
    import secrets as token_source

    from tunecluster.backends.launch import Overrides, resolve_spec
    from tunecluster.backends.kubernetes import rbac as rbac_module
    from tunecluster.backends.kubernetes.render import render as render_objects
    from tunecluster.backends.kubernetes.render import to_yaml

    if backend == BackendName.local:
        raise UsageError("the local backend has nothing to render; use --backend kubernetes or compose")
    if backend == BackendName.compose:
        from tunecluster.backends.compose.render import DEFAULT_IMAGE
        from tunecluster.backends.compose.project import render_text

        spec, _ = resolve_spec(str(file) if file else None, example)
        spec = Overrides(workers=workers, backend="compose").apply(spec)
        sys.stdout.write(render_text(spec, _run_dir(dir, spec.name), image or DEFAULT_IMAGE, port, gpus))
        return
    if rbac:
        ns = namespace or "default"
        objects = [rbac_module.role(ns)] + ([rbac_module.role_binding(ns, user)] if user else [])
        print(to_yaml(objects), end="")
        return
    spec, _ = resolve_spec(str(file) if file else None, example)
    spec = Overrides(workers=workers).apply(spec)
    if image:
        spec.cluster.kubernetes.image = image
    ns = namespace or spec.cluster.kubernetes.namespace or "default"
    token = token_source.token_urlsafe(32) if include_secret else None
    tls = None
    if spec.cluster.tls and include_secret:
        from tunecluster.cluster.security import make_certificate

        tls = make_certificate(("tunecluster-chief", f"{spec.name}-chief", f"{spec.name}-chief.{ns}.svc"))
    text = to_yaml(render_objects(spec, namespace=ns, token=token, tls=tls, tensorboard=tensorboard or None))
    if not include_secret:
        secret = f"{spec.name}-oracle"
        text = (f"# The Secret {secret} (the oracle token) is not printed; create it with\n"
                f"#   kubectl -n {ns} create secret generic {secret} --from-literal=token=$(openssl rand -hex 32)\n"
                "# or pass --include-secret. `tunecluster up --backend kubernetes` creates it for you.\n" + text)
    print(text, end="")


def _setup_role_logging():
    level = logging.DEBUG if _state["debug"] else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
@_errors_to_exit
def chief():
    """Run the chief (the oracle server). Configured by KERASTUNER_ORACLE_IP (bind address),
    KERASTUNER_ORACLE_PORT, TUNECLUSTER_SPEC, TUNECLUSTER_RUN_DIR, the token
    (TUNECLUSTER_TOKEN_FILE or TUNECLUSTER_TOKEN, or TUNECLUSTER_INSECURE=1) and optional TLS
    (TUNECLUSTER_TLS_CERT + TUNECLUSTER_TLS_KEY). SIGTERM saves the state and exits."""
    from tunecluster.cluster.chief.server import run_chief
    from tunecluster.core.env import read_role_env
    from tunecluster.cluster.security import read_security
    from tunecluster.tuning.spec import load_spec

    _setup_role_logging()
    role = read_role_env(default_id="chief")
    if not role.spec_path:
        raise UsageError("TUNECLUSTER_SPEC is not set; point it at the experiment's spec file")
    spec = load_spec(role.spec_path)
    security = read_security(chief=True)
    raise typer.Exit(run_chief(spec, role.run_dir or ".", role.oracle_ip, role.oracle_port, security))


@app.command()
@_errors_to_exit
def worker():
    """Run a worker. Configured by KERASTUNER_TUNER_ID (tuner<i>), KERASTUNER_ORACLE_IP,
    KERASTUNER_ORACLE_PORT, TUNECLUSTER_SPEC, TUNECLUSTER_RUN_DIR, the token (as for the chief)
    and TUNECLUSTER_TLS_CA when the chief uses TLS. SIGTERM gives its trial back and exits."""
    from tunecluster.core.env import read_role_env
    from tunecluster.cluster.worker.loop import run_worker
    from tunecluster.tuning.spec import load_spec

    _setup_role_logging()
    role = read_role_env(default_id="tuner0")
    if not role.spec_path:
        raise UsageError("TUNECLUSTER_SPEC is not set; point it at the experiment's spec file")
    raise typer.Exit(run_worker(load_spec(role.spec_path), role))


@app.command()
@_errors_to_exit
def status(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory."),
    format: StatusFormat = typer.Option(StatusFormat.table, "--format", help="table or json."),
):
    """Each role with its state and process id, the chief's address, and the search's progress."""
    from tunecluster.ui.live import summary_line
    from tunecluster.backends.local.processes import role_states
    from tunecluster.core.rundir import read_json

    run = _existing_run(dir)
    if _backend_of(run) == "kubernetes":
        return _status_kubernetes(run, format)
    compose_run = _compose_run(run)
    cluster = compose_run.refresh() if compose_run else role_states(run)
    progress = read_json(run.progress) or {}
    if format == StatusFormat.json:
        console.print_json(json.dumps({
            "run_dir": str(run.root), "backend": cluster.get("backend"),
            "chief_address": cluster.get("chief_address"), "roles": cluster["roles"],
            "finished": progress.get("finished", False), "counts": progress.get("counts"),
            "best": progress.get("best"),
        }, default=str))
        return
    table = Table(title=f"{run.root.name}: chief at {cluster.get('chief_address', '?')}")
    for column in ("role", "tuner id", "state", "pid", "exit code", "restarts", "trial", "epoch"):
        table.add_column(column)
    workers = progress.get("workers") or {}
    for role in cluster["roles"]:
        w = workers.get(role["tuner_id"], {})
        state = role["state"] + (" (given up)" if role.get("given_up") else "")
        table.add_row(role["name"], role["tuner_id"], state, str(role["pid"] or ""),
                      "" if role["exit_code"] is None else str(role["exit_code"]),
                      str(role.get("restarts", 0)), str(w.get("trial") or ""), str(w.get("epoch") or ""))
    console.print(table)
    if progress:
        console.print(("finished: " if progress.get("finished") else "running: ") + summary_line(progress),
                      highlight=False)


def _status_kubernetes(run, format: "StatusFormat"):
    from tunecluster.ui.live import summary_line
    from tunecluster.core.rundir import read_json
    from tunecluster.backends.kubernetes import launcher
    from tunecluster.tuning.spec import load_spec

    spec = load_spec(run.spec)
    cluster = _kube(run)
    state = launcher.status(cluster, spec.name)
    follower = launcher.Follower(cluster, spec, run)
    follower.refresh()
    progress = read_json(run.progress) or {}
    if format == StatusFormat.json:
        console.print_json(json.dumps({"run_dir": str(run.root), "backend": "kubernetes",
                                       "namespace": cluster.namespace, **state,
                                       "finished": progress.get("finished", False),
                                       "counts": progress.get("counts"), "best": progress.get("best")}, default=str))
        return
    table = Table(title=f"{spec.name} in namespace {cluster.namespace} (chief job: {state['chief_job'] or 'running'})")
    for column in ("role", "pod", "phase", "restarts", "node", "trial", "epoch"):
        table.add_column(column)
    workers = progress.get("workers") or {}
    for pod in state["pods"]:
        tuner = "chief" if pod["name"] == "chief" else pod["name"].replace("worker-", "tuner")
        w = workers.get(tuner, {})
        table.add_row(pod["name"], pod["pod"], pod["phase"], str(pod["restarts"]), pod["node"] or "",
                      str(w.get("trial") or ""), str(w.get("epoch") or ""))
    console.print(table)
    for pod in state["pods"]:
        if pod["problem"]:
            console.print(f"[red]problem[/]: {pod['problem']}", highlight=False)
    if progress:
        console.print(("finished: " if progress.get("finished") else "running: ") + summary_line(progress),
                      highlight=False)


UP_TABLE_ROWS = 25  # the best trials `up` prints at the end (`results` prints them all)


def _print_results(run, format: Format, limit: Optional[int]):
    from tunecluster.tuning.results import hp_names, read_results, sorted_rows, to_csv

    document = read_results(run)
    if format == Format.json:
        print(json.dumps(document, indent=2))
        return
    if format == Format.csv:
        sys.stdout.write(to_csv(document))
        return
    # a pipe or a log file gets the whole table, not one folded to 80 columns
    table = results_table(document, limit)
    if console.is_terminal:
        console.print(table)
    else:
        width = console.width
        console.width = max(width, 160)
        try:
            console.print(table)
        finally:
            console.width = width
    hidden = len(document["trials"]) - limit if limit else 0
    if hidden > 0:
        console.print(f"... and {hidden} more trials: `tunecluster results --dir {run.root}` lists them all",
                      highlight=False)
    for line in result_notes(document):
        console.print(line, highlight=False)


def _pm(mean, std) -> str:
    if mean is None:
        return ""
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def results_table(document: dict, limit: Optional[int] = None) -> Table:
    """The trials best first: confirmed configurations by their confirmed mean, then the others."""
    from tunecluster.tuning.results import hp_names, sorted_rows

    names = hp_names(document)
    shown = [n for n in names if not n.startswith("tuner/")]
    mode = document.get("score_mode", "best_epoch")
    ranks, other = ("best", "last") if mode == "best_epoch" else ("last", "best")
    confirmation = document.get("confirmation") or {}
    confirmed = bool(confirmation.get("ranking"))
    executions = document.get("executions_per_trial", 1)
    ranking = (f"ranked by the confirmed mean of {confirmation.get('repeats')} retrainings"
               if confirmed else f"ranked by the {ranks}-epoch score")
    title = (f"{document['experiment']}: {document['tuner']} search, objective "
             f"{document['objective']} ({document['direction']}), {ranking}"
             + ("" if document.get("finished") else " [still running]"))
    table = Table(title=title)
    has_test = any((r.get("confirmed") or {}).get("test_mean") is not None for r in document["trials"])
    columns = ["trial", "status", "score", f"{other} epoch"]
    if executions > 1:
        columns.append(f"± std ({executions} runs)")
    if confirmed:
        columns += ["confirmed"] + (["test"] if has_test else [])
    columns += ["worker", "time (s)"]
    numeric = {c for c in columns if c.startswith(("score", "confirmed", "test", "time", "±")) or c.endswith("epoch")}
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left")
    wide = len(shown) > 5  # many hyperparameters: one folded column instead of one each
    if wide:
        table.add_column("hyperparameters", overflow="fold", ratio=1)
    else:
        for name in shown:
            table.add_column(name, overflow="fold")
    table.add_column("notes", overflow="fold")
    rows = sorted_rows(document)
    for row in rows[:limit] if limit else rows:
        score = row["score"]
        other_score = row.get(f"score_{other}_epoch")
        notes = []
        if row.get("degenerate"):
            notes.append("degenerate (one class)")
        if row.get("error_type"):
            notes.append(f"{row['error_type']}: {row['message']}"[:80])
        cells = [row["trial_id"], row["status"], "" if score is None else f"{score:.4f}",
                 "" if other_score is None else f"{other_score:.4f}"]
        if executions > 1:
            cells.append("" if row.get("score_std") is None else f"{row['score_std']:.4f}")
        if confirmed:
            c = row.get("confirmed") or {}
            cells.append(_pm(c.get("mean"), c.get("std")))
            if has_test:
                cells.append(_pm(c.get("test_mean"), c.get("test_std")))
        cells += [row.get("worker") or "", "" if row.get("duration_s") is None else f"{row['duration_s']:.1f}"]
        cells += ([", ".join(f"{n}={_cell(row['hyperparameters'][n])}" for n in shown
                             if n in row["hyperparameters"])] if wide
                  else [_cell(row["hyperparameters"].get(n)) for n in shown])
        table.add_row(*cells, "; ".join(notes))
    return table


def result_notes(document: dict) -> list[str]:
    """How to read the table, and the run's warnings."""
    mode = document.get("score_mode", "best_epoch")
    lines = [(f"score: {document['objective']} at each training's best epoch (Keras Tuner's choice; optimistic, "
              "the same validation rows pick the epoch and report it); 'last epoch' is the honest "
              "end-of-training value.") if mode == "best_epoch" else
             f"score: {document['objective']} at each training's last epoch; 'best epoch' is the optimistic peak."]
    if (document.get("confirmation") or {}).get("ranking"):
        lines.append("confirmed: mean ± std of the validation score over fresh-seed retrainings after the "
                     "search; test: the same runs on the held-out rows (never used to choose).")
    lines += [f"warning: {w}" for w in document.get("warnings") or []]
    return lines


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


@app.command()
@_errors_to_exit
def results(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory."),
    format: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    top: Optional[int] = typer.Option(None, "--top", min=1, help="Show only the best N trials (table)."),
):
    """The trials of a run, best first: status, score, worker, time, hyperparameters, errors."""
    run = _existing_run(dir)
    if _backend_of(run) == "kubernetes":
        _refresh_kubernetes_results(run)
    compose_run = _compose_run(run)
    if compose_run:
        compose_run.refresh()
    _print_results(run, format, top)


def _refresh_kubernetes_results(run) -> None:
    """Copy the latest results.json/.csv off the volume (through the chief, else a helper pod)."""
    import tempfile

    from tunecluster.backends.kubernetes import launcher
    from tunecluster.tuning.spec import load_spec

    spec = load_spec(run.spec)
    cluster = _kube(run)
    follower = launcher.Follower(cluster, spec, run)
    follower.refresh()
    if follower.refreshed:
        return
    with tempfile.TemporaryDirectory() as scratch:
        launcher.pull(cluster, spec, Path(scratch), require_model=False)
        for name in ("results.json", "results.csv", "progress.json"):
            if (Path(scratch) / name).is_file():
                shutil.copy2(Path(scratch) / name, run.root / name)


@app.command()
@_errors_to_exit
def pull(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory."),
    to: Path = typer.Option(Path("best"), "--to", help="Folder to copy the best model and results into."),
    force: bool = typer.Option(False, "--force", help="Overwrite files already in --to."),
):
    """Copy the best model (model.keras, hyperparameters.json, metrics.json; a run_trial search has
    no model.keras) and the results out."""
    import tempfile

    run = _existing_run(dir)
    scratch = None
    if _backend_of(run) == "kubernetes":
        from tunecluster.backends.kubernetes import launcher
        from tunecluster.tuning.spec import load_spec
        from tunecluster.core.rundir import RunDir

        scratch = tempfile.TemporaryDirectory()
        launcher.pull(_kube(run), load_spec(run.spec), Path(scratch.name))
        run = RunDir(scratch.name)
    compose_run = None if scratch else _compose_run(run)
    if compose_run:  # from the volume, into the run directory first
        from tunecluster.backends.compose.project import SYNCED

        compose_run.copy_out(("best", *SYNCED))
        if compose_run.volume_gone and not run.best_metrics.is_file():
            raise UsageError(f"the volume of {compose_run.project} is gone (`down --volumes`) and no model "
                             f"was pulled into {run.root} before")
    # metrics.json is the export's last file (after model.keras; a run_trial search has no model)
    if not run.best_metrics.is_file():
        raise UsageError(f"{run.root} has no exported best model or configuration yet (best/metrics.json); "
                         "wait for the search to finish")
    files = [run.best_model, run.best_hyperparameters, run.best_metrics, run.results_json, run.results_csv]
    targets = [to / f.name for f in files if f.exists()]
    clash = [t.name for t in targets if t.exists()]
    if clash and not force:
        raise UsageError(f"--to {to} already has {', '.join(clash)}; pick another folder or pass --force")
    to.mkdir(parents=True, exist_ok=True)
    for source in files:
        if source.exists():
            shutil.copy2(source, to / source.name)
    console.print(f"copied {len(targets)} files to {to}", highlight=False)


@app.command()
@_errors_to_exit
def report(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory (finished or still running)."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write (default: <run>/report.html)."),
    png: bool = typer.Option(False, "--png", help="Also write each figure as <out>-<figure>.png beside it."),
):
    """One self-contained HTML report of a search: best so far, parallel coordinates, score per
    hyperparameter, worker timeline and utilisation, the best trial and the sortable results."""
    from tunecluster.report import build_report

    made = build_report(_existing_run(dir).root, out, png=png)
    state = "" if made.finished else " (the search is still running; run report again to refresh)"
    console.print(f"report: {made.html} ({made.trials} trials, {made.seconds:.1f} s){state}", highlight=False)
    for path in made.pngs:
        console.print(f"png: {path}", highlight=False)


@app.command()
@_errors_to_exit
def tensorboard(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                       help="Port (default: 6006, or a free one if 6006 is taken; "
                                       "Kubernetes: a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    deploy: bool = typer.Option(False, "--deploy", help="Kubernetes: first create the TensorBoard "
                                "Deployment and Service when the run has none (`down` removes them)."),
):
    """Start TensorBoard on the run's tensorboard folder (scalars per epoch and the HParams view
    of every trial), print its URL and serve until Ctrl-C. For a Kubernetes run: forward a local
    port to the run's TensorBoard pod (`up --tensorboard`) through the API server instead."""
    import signal

    from tunecluster.report import tensorboard_server

    run = _existing_run(dir)
    kubernetes = _backend_of(run) == "kubernetes"
    if deploy and not kubernetes:
        raise UsageError("--deploy is for Kubernetes runs; this run's TensorBoard runs here")
    logdir = None if kubernetes else tensorboard_server.logdir_of(run.root)

    def on_sigterm(*_):
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM stop the child TensorBoard (or the port-forward) too (SIGINT explicitly:
    # a shell's background job inherits it ignored)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    if kubernetes:
        _tensorboard_kubernetes(run, host, port, deploy)
        raise typer.Exit(0)
    proc, url = tensorboard_server.start(logdir, host=host, port=port, log_path=run.logs / "tensorboard.log")
    try:  # (a Ctrl-C right after the URL is printed still stops TensorBoard)
        console.print(f"TensorBoard for {run.root.name}: {url} (logdir {logdir}; HParams tab: {url}#hparams); "
                      "Ctrl-C to stop", highlight=False)
        code = proc.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        tensorboard_server.stop(proc)
    raise typer.Exit(0 if code in (0, -2, -15) else 1)


def _tensorboard_kubernetes(run, host: str, port: Optional[int], deploy: bool) -> None:
    """Forward 127.0.0.1:<free port> to the run's TensorBoard pod until Ctrl-C/SIGTERM."""
    import time

    from tunecluster.backends.kubernetes import forward as fwd
    from tunecluster.backends.kubernetes.launcher import apply_objects
    from tunecluster.backends.kubernetes.render import Names, tensorboard_objects
    from tunecluster.tuning.spec import load_spec

    spec = load_spec(run.spec)
    cluster = _kube(run)
    names = Names(spec.name)
    if not fwd.deployment_exists(cluster, names.tensorboard):
        claim = spec.cluster.kubernetes.existing_claim or names.claim
        if not fwd.claim_exists(cluster, claim):
            raise UsageError(f"the run {spec.name!r} has no TensorBoard in namespace {cluster.namespace} and its "
                             f"volume claim {claim} is gone (`down` deleted it), so there are no logs to show; "
                             "start a new run with `up --backend kubernetes --tensorboard`")
        if not deploy:
            raise UsageError(f"the run {spec.name!r} has no TensorBoard in namespace {cluster.namespace} (no "
                             f"Deployment {names.tensorboard}: it was started without `up --tensorboard` or "
                             f"cluster.kubernetes.tensorboard); add it with `tunecluster tensorboard --dir "
                             f"{run.root} --deploy`")
        apply_objects(cluster, tensorboard_objects(spec, cluster.namespace))
        console.print(f"applied: Deployment/{names.tensorboard}, Service/{names.tensorboard} "
                      "(`tunecluster down` removes them)", highlight=False)
    forward = fwd.TensorBoardForward(cluster, spec.name)
    relay = fwd.Relay(forward.connect, host=host, port=port or 0).start()
    try:
        console.print(f"waiting for the TensorBoard pod of {spec.name} ...", highlight=False)
        fwd.wait_until_serving(relay, forward)
        shown = "localhost" if host in ("127.0.0.1", "localhost") else host
        url = f"http://{shown}:{relay.port}/"
        console.print(f"TensorBoard for {spec.name}: {url} (forwarded to pod {forward.ready_pod() or '?'} in "
                      f"namespace {cluster.namespace}; HParams tab: {url}#hparams); Ctrl-C to stop", highlight=False)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        relay.close()


@app.command()
@_errors_to_exit
def logs(
    role: str = typer.Argument("chief", help="chief or worker-<i>."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory."),
    tail: int = typer.Option(50, "--tail", min=0, help="Lines to show (0: all)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Kubernetes: stream the pod's log)."),
):
    """Print a role's log."""
    run = _existing_run(dir)
    if _backend_of(run) == "kubernetes":
        from tunecluster.backends.kubernetes import launcher
        from tunecluster.tuning.spec import load_spec

        launcher.logs(_kube(run), load_spec(run.spec).name, role, tail=tail or None, follow=follow, out=sys.stdout)
        return
    compose_run = _compose_run(run)
    text = compose_run.logs(role, tail) if compose_run else None
    if text is not None:  # the container's log; once `down` removed it, the copy saved in logs/
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        return
    path = run.log(role)
    if not path.is_file():
        names = sorted(p.stem for p in run.logs.glob("*.log"))
        raise UsageError(f"no log for {role!r}; roles with logs: {', '.join(names) or 'none'}")
    lines = path.read_text(errors="replace").splitlines()
    sys.stdout.write("\n".join(lines[-tail:] if tail else lines) + "\n")
    if follow:
        _follow_local_log(run, role, path)


def _follow_local_log(run, role: str, path: Path) -> None:
    """Print what the role writes until it (and every restart of it) has exited."""
    import time

    from tunecluster.backends.local.processes import role_states

    with open(path, errors="replace") as handle:
        handle.seek(0, 2)
        while True:
            chunk = handle.read()
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
            states = {r["name"]: r["state"] for r in role_states(run)["roles"]}
            if states.get(role) != "running" and not chunk:
                return
            time.sleep(0.3)


@app.command()
@_errors_to_exit
def down(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory."),
    keep_volume: bool = typer.Option(False, "--keep-volume", help="Kubernetes: keep the volume claim (the results)."),
    volumes: bool = typer.Option(False, "--volumes", help="compose: remove the run's volume too "
                                 "(pull the best model first)."),
):
    """Stop a run: local roles still running are stopped (the run directory is kept); a compose
    run's containers and network are removed (with --volumes its volume too), keeping their logs;
    on Kubernetes every object of the experiment is deleted (the claim too unless --keep-volume)."""
    from tunecluster.backends.local.processes import stop_recorded

    run = _existing_run(dir)
    if _backend_of(run) == "kubernetes":
        from tunecluster.backends.kubernetes import launcher
        from tunecluster.tuning.spec import load_spec

        deleted = launcher.delete_experiment(_kube(run), load_spec(run.spec).name, keep_volume=keep_volume)
        console.print(f"deleted: {', '.join(deleted)}" if deleted else "nothing was left", highlight=False)
        return
    compose_run = _compose_run(run)
    if compose_run:
        removed = compose_run.down(volumes=volumes)
        console.print(f"removed project {compose_run.project}" + (f" (and {', '.join(removed)})" if removed else "")
                      + ("" if volumes else "; its volume is kept (`down --volumes` removes it)")
                      + f"; logs saved in {run.logs}", highlight=False)
        return
    if volumes:
        raise UsageError("--volumes is for compose runs; a local run keeps everything in its --dir folder")
    stopped = stop_recorded(run)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def _compose_run(run):
    """The ComposeRun of a run directory `up --backend compose` made, else None."""
    from tunecluster.backends.compose.project import ComposeRun

    return ComposeRun.of(run)


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app()


if __name__ == "__main__":
    main()
