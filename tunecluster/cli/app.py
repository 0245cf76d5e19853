"""The `tunecluster` Typer app: its global options, the shared option types, and the one place
that turns errors into one line on stderr and an exit code (2 bad input, 1 a failure while
running; `--debug` shows the traceback)."""

from __future__ import annotations

import functools
import logging
import os
import sys
from enum import Enum

import typer
from rich.console import Console

from tunecluster import __version__
from tunecluster.core.errors import TuneclusterError

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
    asha = "asha"


class BackendName(str, Enum):
    local = "local"
    compose = "compose"
    kubernetes = "kubernetes"


KUBE_CONTEXT = typer.Option(None, "--context", help="Kubernetes: kubeconfig context (default: the current one).")
KUBE_NAMESPACE = typer.Option(None, "--namespace", "-n", help="Kubernetes: namespace (default: "
                              "cluster.kubernetes.namespace, else the context's).")
KUBECONFIG = typer.Option(None, "--kubeconfig", help="Kubernetes: kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")


def say(line: str) -> None:
    """One plain line for the user (no Rich markup or highlighting)."""
    console.print(line, highlight=False, markup=False)


def errors_to_exit(func):
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


def debugging() -> bool:
    return _state["debug"]


def setup_role_logging() -> None:
    level = logging.DEBUG if _state["debug"] else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app()
