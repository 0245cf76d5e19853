"""A binary-safe exec stream to a pod: bytes in (stdin) and bytes out (stdout), chunk by chunk.

The `kubernetes` client's `stream()` opens the exec websocket (with the kubeconfig's auth, TLS and
proxy settings); its WSClient is then bypassed: it decodes stdout as UTF-8 unless `binary=True`
(a keyword only recent client releases have), and it keeps a copy of everything received
(`capture_all`) - an in-memory copy of the whole transfer. Here the websocket's frames are read
directly: each data frame is one channel byte (0 stdin, 1 stdout, 2 stderr, 3 the exit status,
255 a v5 close) and raw bytes, handed to the caller as they arrive. Stdin is written as binary
frames. This works with both the v4 and the v5 channel protocols; the commands run here never
need stdin to be closed (they read an announced number of bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.core.errors import RunFailure

STDIN, STDOUT, STDERR, STATUS, CLOSE = 0, 1, 2, 3, 255
WRITE_CHUNK = 256 * 1024  # bytes of stdin per websocket frame
STDERR_KEPT = 64 * 1024


def exit_code(status: bytes) -> int:
    """The exit code in the exec's status channel (a metav1.Status as JSON)."""
    if not status.strip():
        return 0
    try:
        document = json.loads(status)
    except ValueError:
        return 1
    if document.get("status") == "Success":
        return 0
    for cause in (document.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                break
    return 1


class EndedEarly(Exception):
    """The command ended before all of its stdin was written (`finish` tells how)."""


@dataclass
class ExecResult:
    code: int
    stdout: bytes  # only what the caller did not take with `on_stdout`
    stderr: bytes

    def error_line(self) -> str:
        lines = [line for line in self.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        return lines[-1] if lines else f"exit code {self.code}"


class ExecStream:
    """One command in a pod, with stdin, stdout and stderr as bytes."""

    def __init__(self, cluster: Cluster, pod: str, command: list[str], *, stdin: bool = False,
                 timeout: float = 600):
        from kubernetes.stream import stream

        try:
            self._client = stream(cluster.core.connect_get_namespaced_pod_exec, pod, cluster.namespace,
                                  command=command, stdin=stdin, stdout=True, stderr=True, tty=False,
                                  _preload_content=False)
        except Exception as exc:
            raise explain(exc, f"starting a command in pod {pod}") from None
        self.sock = self._client.sock
        self.sock.settimeout(timeout)  # a silent connection fails after `timeout` s instead of hanging
        self.pod = pod
        self._frames = self.frames()
        self._early: list[tuple[int, bytes]] = []
        self._ended = False

    def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin (binary frames of at most WRITE_CHUNK). Raises
        EndedEarly when the command has already ended (it answered while we were writing): a
        command that stopped reading would otherwise leave the write blocked."""
        from websocket import ABNF

        if self.ended_early():
            raise EndedEarly()
        view = memoryview(data)
        for start in range(0, len(view), WRITE_CHUNK):
            self.sock.send(bytes([STDIN]) + view[start:start + WRITE_CHUNK].tobytes(), opcode=ABNF.OPCODE_BINARY)

    def ended_early(self) -> bool:
        """Read the frames already waiting (without blocking); True once the exit status or the
        end of the stream came. The frames are replayed by `finish`."""
        import select
        import ssl

        while not self._ended:
            raw = self.sock.sock
            waiting = (isinstance(raw, ssl.SSLSocket) and raw.pending()) or select.select([raw], [], [], 0)[0]
            if not waiting:
                break
            frame = next(self._frames, None)
            if frame is None:
                self._ended = True
                break
            self._early.append(frame)
            if frame[0] == STATUS:
                self._ended = True
        return self._ended

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(channel, bytes) as they arrive, until the server closes the stream."""
        from websocket import (
            ABNF,
            WebSocketConnectionClosedException,
            WebSocketTimeoutException,
        )

        while True:
            try:
                opcode, frame = self.sock.recv_data_frame(True)
            except WebSocketConnectionClosedException:
                return
            except (WebSocketTimeoutException, TimeoutError, OSError) as exc:
                raise RunFailure(f"the exec stream to pod {self.pod} stopped ({type(exc).__name__}: {exc}); "
                                 "run the command again") from None
            if opcode == ABNF.OPCODE_CLOSE:
                return
            if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not frame.data:
                continue
            data = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
            yield data[0], data[1:]

    def finish(self, on_stdout: Optional[Callable[[bytes], None]] = None,
               on_stderr: Optional[Callable[[bytes], None]] = None) -> ExecResult:
        """Read until the command ends: stdout to `on_stdout` (else kept), stderr kept (its last
        64 KiB) and passed to `on_stderr`; the exit code from the status channel."""
        import itertools

        out, err, status = bytearray(), bytearray(), bytearray()
        try:
            for channel, data in itertools.chain(self._early, () if self._ended else self._frames):
                if channel == STDOUT:
                    on_stdout(data) if on_stdout else out.extend(data)
                elif channel == STDERR:
                    err.extend(data)
                    del err[:-STDERR_KEPT]
                    if on_stderr:
                        on_stderr(data)
                elif channel == STATUS:
                    status.extend(data)
        finally:
            self.close()
        return ExecResult(exit_code(bytes(status)), bytes(out), bytes(err))

    def close(self) -> None:
        try:
            self.sock.close()
        except Exception:
            pass


def run_command(cluster: Cluster, pod: str, command: list[str], *, stdin: Optional[bytes] = None,
                timeout: float = 600) -> ExecResult:
    """Run `command` in `pod` to its end; small outputs only (kept in memory)."""
    stream = ExecStream(cluster, pod, command, stdin=stdin is not None, timeout=timeout)
    if stdin:
        stream.write(stdin)
    return stream.finish()
