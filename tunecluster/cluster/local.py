"""The local backend: the chief and N workers as processes on this machine (127.0.0.1).

Each role runs `python -m tunecluster chief|worker` in its own session (so Ctrl-C reaches only the
launcher, which then stops them in order), with its output in `<run>/logs/<role>.log`. The roles,
their pids and exit codes are recorded in `<run>/cluster.json` for `tunecluster status`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

from tunecluster.cluster.plan import ClusterPlan, Role
from tunecluster.cluster.rundir import RunDir, read_json, write_json
from tunecluster.errors import RunFailure


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def default_tf_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@dataclass
class RoleProcess:
    role: Role
    process: subprocess.Popen
    started: float
    exit_code: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.exit_code is None:
            self.exit_code = self.process.poll()
        return self.exit_code


class LocalCluster:
    """Starts, watches and stops the processes of one plan."""

    def __init__(self, plan: ClusterPlan, run: RunDir):
        self.plan = plan
        self.run = run
        self.procs: dict[str, RoleProcess] = {}

    def _spawn(self, role: Role) -> RoleProcess:
        self.run.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.run.log(role.name), "ab")
        env = {**os.environ, **role.env}
        process = subprocess.Popen(
            [sys.executable, "-m", "tunecluster", *role.command],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=str(self.run.root),
        )
        log.close()
        rp = RoleProcess(role, process, time.time())
        self.procs[role.name] = rp
        return rp

    def start(self, chief_timeout: float = 60.0) -> None:
        # Workers start at once: importing TensorFlow takes them seconds, and their first call
        # waits for the chief to listen (gRPC wait_for_ready).
        chief = self._spawn(self.plan.chief)
        for role in self.plan.workers:
            self._spawn(role)
        self.record()
        try:
            self._wait_for_chief(chief, chief_timeout)
        except RunFailure:
            self.stop(timeout=5.0)
            raise

    def _wait_for_chief(self, chief: RoleProcess, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if chief.poll() is not None:
                tail = self.log_tail("chief")
                raise RunFailure(f"the chief exited with code {chief.exit_code} before listening: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.plan.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RunFailure(f"the chief did not listen on port {self.plan.port} within {timeout:.0f} s; "
                         f"see {self.run.log('chief')}")

    def log_tail(self, name: str) -> str:
        try:
            lines = [l for l in self.run.log(name).read_text(errors="replace").splitlines() if l.strip()]
        except FileNotFoundError:
            return "(no log)"
        errors = [l for l in lines if "error" in l.lower()]
        return (errors or lines or ["(empty log)"])[-1].strip()

    def chief_exit(self) -> Optional[int]:
        return self.procs["chief"].poll()

    def poll(self) -> dict[str, Optional[int]]:
        codes = {name: rp.poll() for name, rp in self.procs.items()}
        self.record()
        return codes

    def record(self) -> None:
        roles = []
        for name, rp in self.procs.items():
            code = rp.poll()
            roles.append({
                "name": name, "tuner_id": rp.role.tuner_id, "pid": rp.process.pid,
                "state": "running" if code is None else ("exited" if code == 0 else "failed"),
                "exit_code": code, "started": rp.started, "log": str(self.run.log(name)),
            })
        write_json(self.run.cluster, {
            "backend": "local", "experiment": self.plan.experiment,
            "chief_address": f"127.0.0.1:{self.plan.port}", "launcher_pid": os.getpid(),
            "roles": roles,
        })

    def all_workers_gone(self) -> bool:
        workers = [rp for rp in self.procs.values() if not rp.role.is_chief]
        return bool(workers) and all(rp.poll() is not None for rp in workers)

    def wait_workers(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and any(
            rp.poll() is None for rp in self.procs.values() if not rp.role.is_chief
        ):
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every live role (workers first), then SIGKILL what is left after `timeout`."""
        order = [rp for rp in self.procs.values() if not rp.role.is_chief] + [
            rp for rp in self.procs.values() if rp.role.is_chief]
        for rp in order:
            if rp.poll() is None:
                _signal_group(rp.process.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline and any(rp.poll() is None for rp in order):
            time.sleep(0.1)
        for rp in order:
            if rp.poll() is None:
                _signal_group(rp.process.pid, signal.SIGKILL)
                rp.process.wait(5)
                rp.poll()
        self.record()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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


def role_states(run: RunDir) -> dict:
    """cluster.json with each role's state checked against the live process table."""
    cluster = read_json(run.cluster) or {"roles": []}
    for role in cluster["roles"]:
        if role["state"] == "running" and not pid_alive(role["pid"]):
            role["state"] = "gone"
    return cluster


def stop_recorded(run: RunDir, timeout: float = 10.0) -> list[str]:
    """Stop the roles recorded in cluster.json that still run (for `tunecluster down`)."""
    stopped = []
    cluster = role_states(run)
    for role in cluster["roles"]:
        if role["state"] == "running":
            _signal_group(role["pid"], signal.SIGTERM)
            stopped.append(role["name"])
    deadline = time.time() + timeout
    while time.time() < deadline and any(pid_alive(r["pid"]) for r in cluster["roles"] if r["name"] in stopped):
        time.sleep(0.1)
    for role in cluster["roles"]:
        if role["name"] in stopped and pid_alive(role["pid"]):
            _signal_group(role["pid"], signal.SIGKILL)
    return stopped
