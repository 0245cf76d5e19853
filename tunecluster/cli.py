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
from tunecluster.errors import TuneclusterError, UsageError

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
    from tunecluster.cluster.launch import DEFAULT_RUNS
    from tunecluster.cluster.rundir import RunDir

    return RunDir(dir if dir is not None else Path(DEFAULT_RUNS) / name)


def _existing_run(dir: Optional[Path]):
    """The run named by --dir, or the only run under ./tunecluster-runs."""
    from tunecluster.cluster.launch import DEFAULT_RUNS
    from tunecluster.cluster.rundir import RunDir

    if dir is not None:
        return RunDir(dir).require_run()
    runs = sorted(p for p in Path(DEFAULT_RUNS).glob("*") if (p / "spec.yaml").is_file())
    if len(runs) == 1:
        return RunDir(runs[0])
    if not runs:
        raise UsageError(f"no run found under ./{DEFAULT_RUNS}; pass --dir PATH")
    raise UsageError(f"several runs under ./{DEFAULT_RUNS} ({', '.join(p.name for p in runs)}); pass --dir PATH")


@app.command()
@_errors_to_exit
def init(
    example: str = typer.Option("pima", "--example", help="pima (= pima-comprehensive) or a phase: "
                                "pima-optimizer, pima-units, pima-layers, pima-comprehensive."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
):
    """Write an editable tunecluster.yaml, model.py and the example CSV into the current folder."""
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
                                          "pima-optimizer, pima-units, pima-layers, pima-comprehensive."),
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
):
    """Start a chief and workers, follow the search live, print the results table."""
    from tunecluster.cluster.launch import Overrides, preflight, prepare_run_dir, resolve_spec, up_local

    if force and resume:
        raise UsageError("give either --force or --resume, not both")
    spec, source = resolve_spec(str(file) if file else None, example)
    spec = Overrides(workers, max_trials, epochs, tuner.value if tuner else None, seed,
                     backend.value if backend else None, insecure, tls).apply(spec)
    if spec.cluster.backend != "local":
        raise UsageError(f"--backend {spec.cluster.backend} is not available yet; use --backend local")
    run = _run_dir(dir, spec.name)
    preflight(spec)
    spec = prepare_run_dir(run, spec, force=force, resume=resume)
    if workers is not None and resume:
        spec = Overrides(workers=workers).apply(spec)
    console.print(f"spec: {source}", highlight=False)
    code = up_local(spec, run, port=port, console=console, detach=detach)
    if code == 0 and not detach:
        _print_results(run, Format.table, limit=None)
        console.print(f"best model: {run.best_model}" if run.best_model.exists() else
                      "no model exported (no completed trial)", highlight=False)
    raise typer.Exit(code)


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
    from tunecluster.cluster.chief import run_chief
    from tunecluster.cluster.env import read_role_env
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
    from tunecluster.cluster.env import read_role_env
    from tunecluster.cluster.worker import run_worker
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
    from tunecluster.cluster.live import summary_line
    from tunecluster.cluster.local import role_states
    from tunecluster.cluster.rundir import read_json

    run = _existing_run(dir)
    cluster = role_states(run)
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
        table.add_row(role["name"], role["tuner_id"], state, str(role["pid"]),
                      "" if role["exit_code"] is None else str(role["exit_code"]),
                      str(role.get("restarts", 0)), str(w.get("trial") or ""), str(w.get("epoch") or ""))
    console.print(table)
    if progress:
        console.print(("finished: " if progress.get("finished") else "running: ") + summary_line(progress),
                      highlight=False)


def _print_results(run, format: Format, limit: Optional[int]):
    from tunecluster.tuning.results import hp_names, read_results, sorted_rows, to_csv

    document = read_results(run)
    if format == Format.json:
        print(json.dumps(document, indent=2))
        return
    if format == Format.csv:
        sys.stdout.write(to_csv(document))
        return
    names = hp_names(document)
    shown = [n for n in names if not n.startswith("tuner/")]
    title = (f"{document['experiment']}: {document['tuner']} search, objective "
             f"{document['objective']} ({document['direction']})"
             + ("" if document.get("finished") else " [still running]"))
    table = Table(title=title)
    for column in ("trial", "status", "score", "worker", "time (s)"):
        table.add_column(column, justify="right" if column in ("score", "time (s)") else "left")
    wide = len(shown) > 5  # many hyperparameters: one folded column instead of one each
    if wide:
        table.add_column("hyperparameters", overflow="fold", ratio=1)
    else:
        for name in shown:
            table.add_column(name, overflow="fold")
    table.add_column("error", overflow="fold")
    rows = sorted_rows(document)
    for row in rows[:limit] if limit else rows:
        score = row["score"]
        error = f"{row['error_type']}: {row['message']}" if row.get("error_type") else ""
        table.add_row(row["trial_id"], row["status"], "" if score is None else f"{score:.4f}",
                      row.get("worker") or "", "" if row.get("duration_s") is None else f"{row['duration_s']:.1f}",
                      *([", ".join(f"{n}={_cell(row['hyperparameters'][n])}" for n in shown
                                   if n in row["hyperparameters"])] if wide
                        else [_cell(row["hyperparameters"].get(n)) for n in shown]), error[:80])
    console.print(table)


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
    _print_results(_existing_run(dir), format, top)


@app.command()
@_errors_to_exit
def pull(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory."),
    to: Path = typer.Option(Path("best"), "--to", help="Folder to copy the best model and results into."),
    force: bool = typer.Option(False, "--force", help="Overwrite files already in --to."),
):
    """Copy the best model (model.keras, hyperparameters.json, metrics.json) and the results out."""
    run = _existing_run(dir)
    if not run.best_model.is_file():
        raise UsageError(f"{run.root} has no exported model yet (best/model.keras); wait for the search to finish")
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
                                       help="Port (default: 6006, or a free one if 6006 is taken)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
):
    """Start TensorBoard on the run's tensorboard folder (scalars per epoch and the HParams view
    of every trial), print its URL and serve until Ctrl-C."""
    from tunecluster.report import tensorboard_server

    run = _existing_run(dir)
    logdir = tensorboard_server.logdir_of(run.root)
    import signal

    def on_sigterm(*_):
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM stop the child TensorBoard too (SIGINT explicitly: a shell's background
    # job inherits it ignored)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
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


@app.command()
@_errors_to_exit
def logs(
    role: str = typer.Argument("chief", help="chief or worker-<i>."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory."),
    tail: int = typer.Option(50, "--tail", min=0, help="Lines to show (0: all)."),
):
    """Print a role's log."""
    run = _existing_run(dir)
    path = run.log(role)
    if not path.is_file():
        names = sorted(p.stem for p in run.logs.glob("*.log"))
        raise UsageError(f"no log for {role!r}; roles with logs: {', '.join(names) or 'none'}")
    lines = path.read_text(errors="replace").splitlines()
    sys.stdout.write("\n".join(lines[-tail:] if tail else lines) + "\n")


@app.command()
@_errors_to_exit
def down(dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory.")):
    """Stop the roles of a run that are still running (the run directory is kept)."""
    from tunecluster.cluster.local import stop_recorded

    stopped = stop_recorded(_existing_run(dir))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app()


if __name__ == "__main__":
    main()
