"""`tunecluster attach`: a run folder for an experiment that runs (or ran) in a cluster, made from
the cluster itself, so status, results, logs, pull, report and down work from another machine or
after the folder `up` made is gone."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunecluster.backends import get_backend
from tunecluster.backends.base import ClusterAccess
from tunecluster.backends.run_folder import run_dir_for
from tunecluster.cli.app import (
    KUBE_CONTEXT,
    KUBE_NAMESPACE,
    KUBECONFIG,
    app,
    console,
    errors_to_exit,
    say,
)
from tunecluster.core.rundir import read_json
from tunecluster.ui.live import LiveView, summary_line


@app.command()
@errors_to_exit
def attach(
    name: str = typer.Argument(..., help="The experiment's name (spec `name`, label tunecluster.io/experiment)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run folder to (re)write (default: ./tunecluster-runs/<name>)."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
    follow: bool = typer.Option(False, "--follow", help="Then follow the search live, as `up` does, until it "
                                "ends (Ctrl-C leaves it running)."),
):
    """Rebuild the run folder of an experiment running (or finished) in a Kubernetes namespace:
    its spec, where it runs, its progress and results; then status, results, logs, pull, report
    and down work with --dir."""
    backend = get_backend("kubernetes")
    run = run_dir_for(dir, name)
    session = backend.attach(name, run, ClusterAccess(context, namespace, kubeconfig), say, follow=follow)
    progress = read_json(run.progress) or {}
    if progress:
        say(("finished: " if progress.get("finished") else "progress: ") + summary_line(progress))
    if session is not None:
        raise typer.Exit(backend.follow(session, LiveView(run, console).follow, say))
    say(f"next: tunecluster status --dir {run.root}  (results, logs, pull, down work the same way)")
