"""Pauses for a thread that does long work beside latency-sensitive ones (the chief's state
writer beside its RPC handlers).

CPython hands the GIL to a waiting thread only every 5 ms (`sys.getswitchinterval`), and a
handler takes the GIL several times on its way (gRPC's polling thread, a pool thread, the token
check, the handler, the answer). While the chief's state writer ran a pass (0.4-1.4 s of Python
at 1,000 workers), each of those waited behind it: at 1,000 simulated workers the heartbeats'
p99 was ~200 ms with the writer running and 8 ms with it paused (benchmarks/chief_scale.py).
A thread inside `pacing()` calls `pause_point()` in its loops; every `slice_s` of work it sleeps
`pause_s`, so that the waiting threads run at once. Anywhere else `pause_point()` does nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time

SLICE_S = 0.002
PAUSE_S = 0.001

_state = threading.local()


@contextlib.contextmanager
def pacing(slice_s: float = SLICE_S, pause_s: float = PAUSE_S):
    """Make `pause_point()` pause in this thread while the block runs."""
    _state.slice, _state.pause, _state.since = slice_s, pause_s, time.perf_counter()
    try:
        yield
    finally:
        _state.slice = None


def pause_point() -> None:
    slice_s = getattr(_state, "slice", None)
    if slice_s is None:
        return
    now = time.perf_counter()
    if now - _state.since >= slice_s:
        time.sleep(_state.pause)
        _state.since = time.perf_counter()
