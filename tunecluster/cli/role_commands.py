"""`tunecluster chief` and `tunecluster worker`: the roles every process, container and pod
runs, configured only through their environment (`core/env.py`)."""

from __future__ import annotations

import typer

from tunecluster.cli.app import app, errors_to_exit, setup_role_logging
from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError


@app.command()
@errors_to_exit
def chief():
    """Run the chief (the oracle server). Configured by KERASTUNER_ORACLE_IP (bind address),
    KERASTUNER_ORACLE_PORT, TUNECLUSTER_SPEC, TUNECLUSTER_RUN_DIR, the token
    (TUNECLUSTER_TOKEN_FILE or TUNECLUSTER_TOKEN, or TUNECLUSTER_INSECURE=1) and optional TLS
    (TUNECLUSTER_TLS_CERT + TUNECLUSTER_TLS_KEY). SIGTERM saves the state and exits."""
    from tunecluster.cluster.auth import read_security
    from tunecluster.cluster.chief import run_chief
    from tunecluster.core.env import read_role_env
    from tunecluster.tuning.spec import load_spec

    setup_role_logging()
    role = read_role_env(default_id="chief")
    if not role.spec_path:
        raise UsageError(f"{role_env.SPEC} is not set; point it at the experiment's spec file")
    spec = load_spec(role.spec_path)
    security = read_security(chief=True)
    raise typer.Exit(run_chief(spec, role.run_dir or ".", role.oracle_ip, role.oracle_port, security))


@app.command()
@errors_to_exit
def worker():
    """Run a worker. Configured by KERASTUNER_TUNER_ID (tuner<i>), KERASTUNER_ORACLE_IP,
    KERASTUNER_ORACLE_PORT, TUNECLUSTER_SPEC, TUNECLUSTER_RUN_DIR, the token (as for the chief)
    and TUNECLUSTER_TLS_CA when the chief uses TLS. SIGTERM gives its trial back and exits."""
    from tunecluster.cluster.worker import run_worker
    from tunecluster.core.env import read_role_env
    from tunecluster.tuning.spec import load_spec

    setup_role_logging()
    role = read_role_env(default_id="tuner0")
    if not role.spec_path:
        raise UsageError(f"{role_env.SPEC} is not set; point it at the experiment's spec file")
    raise typer.Exit(run_worker(load_spec(role.spec_path), role))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@errors_to_exit
def script(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="The Keras Tuner script; the arguments after it are its sys.argv[1:]."),
):
    """Run an unmodified Keras Tuner script as this process's role (chief or worker, by
    KERASTUNER_TUNER_ID): what `up --script` starts in every role, the same as `python -m
    tunecluster.script PATH ARGS...`. Configured like `chief` and `worker`."""
    from tunecluster.script import run_script

    setup_role_logging()
    raise typer.Exit(run_script(path, list(ctx.args)))
