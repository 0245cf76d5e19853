"""The `tunecluster` command line (Typer + Rich): parses the options, looks the backend up once
(`backends.get_backend`, or the one a run recorded), calls it, prints.

    app.py               the Typer app, global options, errors as one line and an exit code
    run_commands.py      init, up, render
    inspect_commands.py  status, results, logs, report, tensorboard, pull, down
    attach_commands.py   attach (a run folder made from an experiment in a cluster)
    build_commands.py    build (the project's image, pushed to a registry)
    role_commands.py     chief, worker (what every container and process runs)
    transfer_commands.py upload (files onto a Kubernetes volume), the transfer progress bar
"""

from tunecluster.cli import run_commands, inspect_commands, attach_commands, build_commands, transfer_commands, role_commands  # noqa: F401, I001 (registers the commands, in --help order)
from tunecluster.cli.app import app, main

__all__ = ["app", "main"]
