"""Tell a training that failed because the shared run folder went away from one that failed on its own.

A worker writes its checkpoints and Keras Tuner's trial files to the shared run folder. When that
folder's network filesystem drops (a FUSE mount whose connection broke, an NFS handle gone stale,
a node losing its network before it is declared lost), the training fails with an `OSError` such as
`ConnectionAbortedError [Errno 103] Unable to synchronously create file '/shared/kt/...'`. That
is not the trial's fault: recorded as FAILED it would be lost to the search, and every later
trial on this worker would fail the same way. `storage_lost()` says so when

- the error (or one it was raised from) is an `OSError` whose errno means "the filesystem's
  transport is gone" and which names a path in the shared folder, or
- the shared folder itself can no longer be listed (a probe in a thread, so that a hung mount
  cannot hang the worker).

The worker then gives the trial back and exits with `EXIT_STORAGE_LOST`, so that its pod or
process is restarted (on a node whose mount works) rather than failing every trial it is given.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Iterator, Optional

# errno values of a filesystem whose transport broke (as opposed to a full disk or a bad path)
TRANSPORT_ERRNOS = frozenset({
    errno.ECONNABORTED, errno.ENOTCONN, errno.ECONNRESET, errno.ESTALE, errno.EIO,
    errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ENETUNREACH, errno.ENODEV,
})
EXIT_STORAGE_LOST = 74  # sysexits' EX_IOERR
PROBE_SECONDS = 10.0


class SharedStorageLost(BaseException):
    """The shared run folder is unreachable: give `key` back and exit (not a trial failure)."""

    def __init__(self, key: Optional[str], reason: str):
        super().__init__(reason)
        self.key = key
        self.reason = reason


def storage_lost(exc: BaseException, shared: Path, probe_seconds: float = PROBE_SECONDS) -> Optional[str]:
    """Why `exc` means the shared folder `shared` is gone (one line), or None when it does not."""
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in TRANSPORT_ERRNOS and _names_path_in(error, shared):
            return f"{type(error).__name__} [Errno {error.errno}] {os.strerror(error.errno)} on {shared}"
    return probe(shared, probe_seconds)


def probe(shared: Path, timeout: float = PROBE_SECONDS) -> Optional[str]:
    """None when `shared` can be listed within `timeout` seconds, else why not (one line)."""
    outcome: dict = {}

    def look() -> None:
        try:
            os.listdir(shared)
            outcome["ok"] = True
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=look, name="shared-folder-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"{shared} did not answer within {timeout:g} s"
    error = outcome.get("error")
    if error is None:
        return None
    if isinstance(error, FileNotFoundError):
        return f"{shared} is gone ({error.strerror})"
    return f"{shared} cannot be read: {type(error).__name__} [Errno {error.errno}] {error.strerror}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _names_path_in(error: OSError, shared: Path) -> bool:
    root = str(shared).rstrip("/") + "/"
    named = [str(name) for name in (error.filename, error.filename2) if name]
    named.append(str(error))  # h5py and TensorFlow put the path in the message, not in `filename`
    return any(root in text or text == root.rstrip("/") for text in named)
