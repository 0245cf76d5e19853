"""`tunecluster upload`: files onto a Kubernetes experiment's volume (streamed, checksummed,
resumable), before `up` or into a running experiment; and the Rich progress bar that `upload` and
`pull` show while bytes move."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tunecluster.backends.image_record import kubernetes_image
from tunecluster.cli.app import (
    KUBE_CONTEXT,
    KUBE_NAMESPACE,
    KUBECONFIG,
    app,
    err_console,
    errors_to_exit,
    say,
)
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, read_json
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.spec import Experiment


class BarProgress:
    """A Rich progress bar per file (bytes, speed, time left) on stderr; shows nothing when stderr
    is not a terminal."""

    def __init__(self):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), console=err_console, transient=True,
                            disable=not err_console.is_terminal)
        self.task = None

    def __enter__(self) -> "BarProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def start(self, label: str, total: Optional[int]) -> None:
        self.finish()
        self.task = self.bar.add_task(label, total=total)

    def advance(self, count: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, count)

    def finish(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None


def _target(dir: Optional[Path], file: Optional[Path], name: Optional[str], context, namespace, kubeconfig):
    """The experiment's spec and cluster connection, from a run folder, a spec file or its name."""
    from tunecluster.backends.kubernetes.backend import KubernetesBackend
    from tunecluster.backends.kubernetes.client import explain
    from tunecluster.backends.kubernetes.render import Names
    from tunecluster.tuning.spec import load_spec, validate_spec

    given = [flag for flag, value in (("--dir", dir), ("-f/--file", file), ("--name", name)) if value]
    if len(given) > 1:
        raise UsageError(f"give one of --dir, -f/--file and --name, not {' and '.join(given)}")
    backend = KubernetesBackend()
    if dir is not None:
        run = RunDir(dir).require_run()
        if (read_json(run.cluster) or {}).get("backend") != "kubernetes":
            raise UsageError(f"{dir} is not a Kubernetes run (no cluster.json of `up --backend kubernetes`); "
                             "give the spec with -f instead")
        spec = load_spec(run.spec)
        return spec, backend.connect(run, context, namespace, kubeconfig), False
    if name is not None:
        cluster = backend.connect(None, context, namespace, kubeconfig)
        try:
            config = cluster.core.read_namespaced_config_map(Names(name).config, cluster.namespace)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                raise UsageError(f"no experiment {name!r} in namespace {cluster.namespace} (no ConfigMap "
                                 f"{Names(name).config}); before `up`, give the spec with -f") from None
            raise explain(exc, f"reading the experiment {name!r}") from None
        spec = validate_spec(yaml.safe_load(config.data["spec.yaml"]), f"ConfigMap {Names(name).config}")
        return spec, cluster, False
    path = file or Path("tunecluster.yaml")
    if not path.is_file():
        raise UsageError(f"{path} not found; name the experiment with -f SPEC (before `up`), --dir RUN or "
                         "--name NAME -n NAMESPACE")
    spec: Experiment = load_spec(path)
    # the image `up` will run (the one `tunecluster build --push` recorded), for the helper pod too
    spec = Overrides(kubernetes_image=kubernetes_image(spec, path.parent.resolve())).apply(spec)
    return spec, backend.connect(None, context, namespace, kubeconfig, spec), True


@app.command()
@errors_to_exit
def upload(
    paths: list[Path] = typer.Argument(..., help="Files or folders to copy (a folder keeps its name and layout)."),
    to: str = typer.Option("data", "--to", help="Folder on the volume, relative to its mount path (/shared) "
                           "or absolute under it."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="The run folder `up` made."),
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="The spec (before `up`: creates the "
                                        "experiment's volume claim from it; default ./tunecluster.yaml)."),
    name: Optional[str] = typer.Option(None, "--name", help="An experiment already in the cluster, by name (with -n)."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
):
    """Kubernetes: copy files onto the experiment's volume, for `data.csv: /shared/<to>/<file>`.
    Streamed and checked with sha256; a file already there is skipped, an interrupted one continued."""
    from tunecluster.backends.kubernetes.upload import upload as send

    spec, cluster, from_spec = _target(dir, file, name, context, namespace, kubeconfig)
    with BarProgress() as bar:
        outcomes = send(cluster, spec, list(paths), to=to, create_claim=from_spec, progress=bar, say=say)
    if len(outcomes) == 1 and outcomes[0].item.name.endswith(".csv"):
        say(f"in the spec: data.csv: {outcomes[0].path}")
