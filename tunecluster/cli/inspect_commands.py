"""The commands that follow a run `up` made, on whichever backend it recorded: `status`,
`results`, `logs`, `report`, `tensorboard`, `pull` and `down`."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from tunecluster.backends import backend_of_run
from tunecluster.backends.base import Backend, ClusterAccess, DownOptions
from tunecluster.backends.run_folder import existing_run
from tunecluster.cli.app import (KUBE_CONTEXT, KUBE_NAMESPACE, KUBECONFIG, Format, StatusFormat, app, console,
                                 errors_to_exit, say)
from tunecluster.cli.transfer_commands import BarProgress
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir
from tunecluster.ui.live import summary_line
from tunecluster.ui.tables import print_wide, result_notes, results_table, status_table

DIR = typer.Option(None, "--dir", help="Run directory.")


def backend_for(run: RunDir, context: Optional[str], namespace: Optional[str], kubeconfig: Optional[str]) -> Backend:
    """The run's backend; a Kubernetes run talks to --context/--namespace/--kubeconfig when given
    (instead of what the run recorded); other backends refuse them with one line."""
    backend = backend_of_run(run)
    backend.use_cluster(ClusterAccess(context, namespace, kubeconfig))
    return backend


@app.command()
@errors_to_exit
def status(
    dir: Optional[Path] = DIR,
    format: StatusFormat = typer.Option(StatusFormat.table, "--format", help="table or json (one schema "
                                        "for every backend: docs/cli.md)."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
):
    """Each role with its state (process, container or pod), the chief's address, and the search's progress."""
    run = existing_run(dir)
    state = backend_for(run, context, namespace, kubeconfig).status(run)
    if format == StatusFormat.json:
        console.print_json(json.dumps(state.to_json(), default=str))
        return
    where = ", ".join(f"{k} {v}" for k, v in state.where.items() if v and k != "launcher_pid")
    console.print(status_table(state, f"{run.root.name} ({state.backend}{', ' + where if where else ''}): "
                                      f"chief at {state.chief_address or '?'}"))
    for role in state.roles:
        if role.problem:
            console.print(f"[red]problem[/]: {role.problem}", highlight=False)
    if state.progress:
        say(("finished: " if state.progress.get("finished") else "running: ") + summary_line(state.progress))


def print_results(run: RunDir, format: Format = Format.table, limit: Optional[int] = None) -> None:
    from tunecluster.tuning.results import read_results, to_csv

    document = read_results(run)
    if format == Format.json:
        print(json.dumps(document, indent=2))
        return
    if format == Format.csv:
        sys.stdout.write(to_csv(document))
        return
    # a pipe or a log file gets the whole table, not one folded to 80 columns
    print_wide(console, results_table(document, limit))
    hidden = len(document["trials"]) - limit if limit else 0
    if hidden > 0:
        say(f"... and {hidden} more trials: `tunecluster results --dir {run.root}` lists them all")
    for line in result_notes(document):
        say(line)


@app.command()
@errors_to_exit
def results(
    dir: Optional[Path] = DIR,
    format: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    top: Optional[int] = typer.Option(None, "--top", min=1, help="Show only the best N trials (table)."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
):
    """The trials of a run, best first: status, score, worker, time, hyperparameters, errors."""
    run = existing_run(dir)
    backend_for(run, context, namespace, kubeconfig).refresh(run)
    print_results(run, format, top)


@app.command()
@errors_to_exit
def pull(
    dir: Optional[Path] = DIR,
    to: Path = typer.Option(Path("best"), "--to", help="Folder to copy the best model and results into."),
    force: bool = typer.Option(False, "--force", help="Overwrite files already in --to."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
):
    """Copy the best model (model.keras, hyperparameters.json, metrics.json; a run_trial search has
    no model.keras) and the results out."""
    run = existing_run(dir)
    with tempfile.TemporaryDirectory() as scratch:
        with BarProgress() as bar:
            source = backend_for(run, context, namespace, kubeconfig).pull(run, Path(scratch), progress=bar)
        # metrics.json is the export's last file (after model.keras; a run_trial search has no model)
        if not source.best_metrics.is_file():
            raise UsageError(f"{run.root} has no exported best model or configuration yet (best/metrics.json); "
                             "wait for the search to finish")
        files = [source.best_model, source.best_hyperparameters, source.best_metrics, source.results_json,
                 source.results_csv]
        targets = [to / f.name for f in files if f.exists()]
        clash = [t.name for t in targets if t.exists()]
        if clash and not force:
            raise UsageError(f"--to {to} already has {', '.join(clash)}; pick another folder or pass --force")
        to.mkdir(parents=True, exist_ok=True)
        for file in files:
            if file.exists():
                shutil.copy2(file, to / file.name)
    say(f"copied {len(targets)} files to {to}")


@app.command()
@errors_to_exit
def report(
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory (finished or still running)."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write (default: <run>/report.html)."),
    png: bool = typer.Option(False, "--png", help="Also write each figure as <out>-<figure>.png beside it."),
):
    """One self-contained HTML report of a search: best so far, parallel coordinates, score per
    hyperparameter, worker timeline and utilisation, the best trial and the sortable results."""
    from tunecluster.report import build_report

    made = build_report(existing_run(dir).root, out, png=png)
    state = "" if made.finished else " (the search is still running; run report again to refresh)"
    say(f"report: {made.html} ({made.trials} trials, {made.seconds:.1f} s){state}")
    for path in made.pngs:
        say(f"png: {path}")


@app.command()
@errors_to_exit
def tensorboard(
    dir: Optional[Path] = DIR,
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                       help="Port (default: 6006, or a free one if 6006 is taken; "
                                       "Kubernetes: a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    deploy: bool = typer.Option(False, "--deploy", help="Kubernetes: first create the TensorBoard "
                                "Deployment and Service when the run has none (`down` removes them)."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
):
    """Start TensorBoard on the run's tensorboard folder (scalars per epoch and the HParams view
    of every trial), print its URL and serve until Ctrl-C. For a Kubernetes run: forward a local
    port to the run's TensorBoard pod (`up --tensorboard`) through the API server instead."""
    run = existing_run(dir)

    def on_signal(*_):
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM stop the child TensorBoard (or the port-forward) too (SIGINT explicitly:
    # a shell's background job inherits it ignored)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    backend = backend_for(run, context, namespace, kubeconfig)
    raise typer.Exit(backend.tensorboard(run, host=host, port=port, deploy=deploy, say=say))


@app.command()
@errors_to_exit
def logs(
    role: str = typer.Argument("chief", help="chief or worker-<i>."),
    dir: Optional[Path] = DIR,
    tail: int = typer.Option(50, "--tail", min=0, help="Lines to show (0: all)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Kubernetes: stream the pod's log)."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
):
    """Print a role's log."""
    run = existing_run(dir)
    backend = backend_for(run, context, namespace, kubeconfig)
    backend.logs(run, role, tail=tail, follow=follow, out=sys.stdout)


@app.command()
@errors_to_exit
def down(
    dir: Optional[Path] = DIR,
    keep_volume: bool = typer.Option(False, "--keep-volume", help="Kubernetes: keep the volume claim (the results)."),
    volumes: bool = typer.Option(False, "--volumes", help="compose: remove the run's volume too "
                                 "(pull the best model first)."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
):
    """Stop a run: local roles still running are stopped (the run directory is kept); a compose
    run's containers and network are removed (with --volumes its volume too), keeping their logs;
    on Kubernetes every object of the experiment is deleted (the claim too unless --keep-volume)."""
    run = existing_run(dir)
    backend = backend_for(run, context, namespace, kubeconfig)
    say(backend.down(run, DownOptions(keep_volume=keep_volume, volumes=volumes)))
