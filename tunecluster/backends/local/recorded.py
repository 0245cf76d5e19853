"""What a local run recorded in `<run>/cluster.json`, checked against this machine's process
table: each role's state for `tunecluster status`, and stopping what still runs for `down`."""

from __future__ import annotations

import os
import signal
import time
from typing import Optional

from tunecluster.backends.local.processes import signal_group
from tunecluster.core.rundir import RunDir, read_json


def pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _is_tunecluster(pid: int) -> bool:
    """The pid still belongs to a tunecluster process (pids are reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"tunecluster" in handle.read()
    except OSError:
        return False


def role_states(run: RunDir) -> dict:
    """cluster.json with each role's state checked against the live process table."""
    cluster = read_json(run.cluster) or {"roles": []}
    for role in cluster["roles"]:
        if role["state"] == "running" and not (pid_alive(role["pid"]) and _is_tunecluster(role["pid"])):
            role["state"] = "gone"
    return cluster


def stop_recorded(run: RunDir, timeout: float = 10.0) -> list[str]:
    """Stop the roles recorded in cluster.json that still run (for `tunecluster down`)."""
    stopped = []
    cluster = role_states(run)
    launcher = cluster.get("launcher_pid")
    if launcher and launcher != os.getpid() and pid_alive(launcher) and _is_tunecluster(launcher):
        # The launcher supervises (it would restart what we stop): ask it to stop everything.
        os.kill(launcher, signal.SIGTERM)
        deadline = time.time() + timeout + 5
        while time.time() < deadline and pid_alive(launcher):
            time.sleep(0.1)
        stopped.append("launcher")
        cluster = role_states(run)
    for role in cluster["roles"]:
        if role["state"] == "running":
            signal_group(role["pid"], signal.SIGTERM)
            stopped.append(role["name"])
    deadline = time.time() + timeout
    while time.time() < deadline and any(pid_alive(r["pid"]) for r in cluster["roles"] if r["name"] in stopped):
        time.sleep(0.1)
    for role in cluster["roles"]:
        if role["name"] in stopped and pid_alive(role["pid"]):
            signal_group(role["pid"], signal.SIGKILL)
    return stopped
