"""The local backend: the chief and N workers as processes on this machine (127.0.0.1).

Each role runs `python -m tunecluster chief|worker` in its own session (so Ctrl-C reaches only the
launcher, which then stops them in order), with its output in `<run>/logs/<role>.log`. The roles,
their pids, exit codes and restarts are recorded in `<run>/cluster.json` for `tunecluster status`.

`supervise()` restarts a role that died before the search ended, with the same id (a worker then
gets its own trial back while its lease lives; a chief reloads its saved state), after a back-off
of 1, 2, 4 ... 30 s, at most `cluster.max_restarts` times per role; then the search goes on with
fewer workers and says so. Exit code 2 (bad input) is never retried: it would fail the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

from tunecluster.cluster.plan import ClusterPlan, Role
from tunecluster.core import env as role_env
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.core.rundir import RunDir, write_json


@dataclass
class RoleProcess:
    role: Role
    process: subprocess.Popen
    started: float
    exit_code: Optional[int] = None
    ended: Optional[float] = None
    restarts: int = 0
    given_up: bool = False

    def poll(self) -> Optional[int]:
        if self.exit_code is None:
            self.exit_code = self.process.poll()
            if self.exit_code is not None:
                self.ended = time.time()
        return self.exit_code


# Variables that must come from the plan only, never from the launcher's own environment.
_PLAN_ONLY = (role_env.TOKEN, role_env.TOKEN_FILE, role_env.INSECURE, role_env.TLS_CERT,
              role_env.TLS_KEY, role_env.TLS_CA, role_env.TLS_SERVER_NAME)


def restart_delay(restarts: int) -> float:
    return float(min(30, 2 ** restarts))


class LocalCluster:
    """Starts, watches and stops the processes of one plan."""

    def __init__(self, plan: ClusterPlan, run: RunDir, max_restarts: int = 0):
        self.plan = plan
        self.run = run
        self.max_restarts = max_restarts
        self.procs: dict[str, RoleProcess] = {}
        self.pids: list[int] = []  # every process started, restarts included

    def _spawn(self, role: Role) -> RoleProcess:
        self.run.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.run.log(role.name), "ab")
        inherited = {k: v for k, v in os.environ.items() if k not in _PLAN_ONLY}
        env = {**inherited, **role.env}
        process = subprocess.Popen(
            [sys.executable, "-m", "tunecluster", *role.command],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=str(self.run.root),
        )
        log.close()
        rp = RoleProcess(role, process, time.time())
        self.procs[role.name] = rp
        self.pids.append(process.pid)
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
                if chief.exit_code == 0 and self.run.finished():
                    return  # listened, served a search that took less than a poll, and ended
                tail = self.log_tail("chief")
                if chief.exit_code == 2:  # the user's to fix (e.g. a --script that cannot run): their one line
                    self.stop(timeout=5.0)
                    raise UsageError(tail.removeprefix("error: "))
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

    def supervise(self, search_over: Callable[[], bool], note: Callable[[str], None]) -> None:
        """Restart roles that died before the end of the search (see the module docstring)."""
        for name, rp in list(self.procs.items()):
            code = rp.poll()
            if code is None or rp.given_up or code in (0, 2):
                continue
            if search_over():
                continue
            if rp.role.is_chief and code == 1 and self.run.finished():
                continue  # the chief ended the search itself (e.g. too many failed trials)
            if rp.restarts >= self.max_restarts:
                rp.given_up = True
                live = [p.role.name for p in self.procs.values() if not p.role.is_chief and p.poll() is None]
                note(f"{name} exited with code {code} and used its {self.max_restarts} restarts; "
                     + ("the search cannot go on without the chief" if rp.role.is_chief else
                        f"continuing with {len(live)} worker(s)"))
                self.record()
                continue
            if time.time() < (rp.ended or 0) + restart_delay(rp.restarts):
                continue
            restarts = rp.restarts + 1
            note(f"{name} exited with code {code}; restarting it with the same id "
                 f"({restarts}/{self.max_restarts})")
            fresh = self._spawn(rp.role)
            fresh.restarts = restarts
            self.record()

    def chief_exit(self) -> Optional[int]:
        return self.procs["chief"].poll()

    def chief_final(self) -> Optional[int]:
        """The chief's exit code once it is over for good (None while it runs or awaits a restart)."""
        rp = self.procs["chief"]
        code = rp.poll()
        if code is None:
            return None
        if code in (0, 2) or rp.given_up or self.max_restarts == 0 or (code == 1 and self.run.finished()):
            return code
        return None

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
                "restarts": rp.restarts, "given_up": rp.given_up,
            })
        write_json(self.run.cluster, {
            "backend": "local", "experiment": self.plan.experiment,
            "chief_address": f"127.0.0.1:{self.plan.port}", "launcher_pid": os.getpid(),
            "roles": roles, "all_pids": self.pids,
        })

    def all_workers_gone(self) -> bool:
        """Every worker has exited and none will be restarted."""
        workers = [rp for rp in self.procs.values() if not rp.role.is_chief]
        return bool(workers) and all(
            rp.poll() is not None and (rp.given_up or rp.exit_code in (0, 2) or self.max_restarts == 0)
            for rp in workers)

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
                signal_group(rp.process.pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline and any(rp.poll() is None for rp in order):
            time.sleep(0.1)
        for rp in order:
            if rp.poll() is None:
                signal_group(rp.process.pid, signal.SIGKILL)
                rp.process.wait(5)
                rp.poll()
        self.record()


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
