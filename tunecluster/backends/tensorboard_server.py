"""`tunecluster tensorboard`: TensorBoard on a run's `<run>/tensorboard` folder, on this machine.

Starts `python -m tensorboard.main` as a child process bound to 127.0.0.1 by default, waits until
it answers HTTP, and hands back the process and its URL; the CLI prints the URL and waits until
Ctrl-C (then stops the child).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from tunecluster.core.errors import TuneclusterError, UsageError

DEFAULT_PORT = 6006


def _free(host: str, port: int) -> bool:
    from tunecluster.core.network import port_in_use

    return not port_in_use(host, port)


def pick_port(host: str, port: Optional[int]) -> int:
    """The given port (refused if taken), else 6006 if free, else any free port."""
    if port is not None:
        if not _free(host, port):
            raise UsageError(f"port {port} on {host} is in use; pick another with --port")
        return port
    if _free(host, DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def logdir_of(run_root: Path) -> Path:
    logdir = Path(run_root) / "tensorboard"
    if not logdir.is_dir() or not any(logdir.iterdir()):
        raise UsageError(f"{logdir} holds no TensorBoard logs yet (no trial has started, or the run "
                         "was made with fit.tensorboard: false)")
    return logdir


def _die_with_parent() -> None:
    """In the child (Linux): get SIGTERM when the CLI process dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except Exception:
        pass


def start(logdir: Path, host: str = "127.0.0.1", port: Optional[int] = None,
          timeout: float = 90.0, log_path: Optional[Path] = None) -> tuple[subprocess.Popen, str]:
    """Start TensorBoard on `logdir`; return the process and its URL once it answers HTTP."""
    port = pick_port(host, port)
    url = f"http://{'localhost' if host in ('127.0.0.1', 'localhost') else host}:{port}/"
    probe = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
         "--port", str(port), "--reload_interval", "5"],
        stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TuneclusterError(f"TensorBoard exited with code {proc.returncode} before it answered"
                                   + (f"; see {log_path}" if log_path else ""))
        try:
            with urllib.request.urlopen(probe, timeout=2) as answer:
                if answer.status == 200:
                    return proc, url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    stop(proc)
    raise TuneclusterError(f"TensorBoard did not answer on {url} within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
