"""core/pacing.py: a thread inside `pacing()` pauses every slice of work at its pause points, so
that the threads waiting for the GIL (the chief's RPC handlers) run; anywhere else, and after the
block, a pause point does nothing. And the chief's process hands the GIL over every millisecond."""

from __future__ import annotations

import threading
import time

from tunecluster.core import pacing


def _busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pacing.pause_point()


def test_pauses_every_slice_inside_the_block_only(monkeypatch):
    pauses = []
    monkeypatch.setattr(pacing.time, "sleep", pauses.append)  # recorded, not slept: the count is
    _busy(0.02)                                                 # the same on a loaded machine
    assert pauses == []  # outside any block
    with pacing.pacing(slice_s=0.002, pause_s=0.0005):
        _busy(0.03)
    inside = len(pauses)
    assert 3 <= inside <= 16 and set(pauses) == {0.0005}  # 15 on an idle machine; fewer when descheduled
    _busy(0.02)
    assert len(pauses) == inside  # the block ended


def test_pacing_is_per_thread(monkeypatch):
    pauses = []
    monkeypatch.setattr(pacing.time, "sleep", lambda s: pauses.append(threading.current_thread().name))
    with pacing.pacing():
        thread = threading.Thread(target=_busy, args=(0.02,), name="other")
        thread.start()
        thread.join()
    assert "other" not in pauses


def test_the_chief_role_hands_the_gil_over_every_millisecond(monkeypatch):
    """run_chief (the chief's process) lowers CPython's switch interval: a handler holding the
    oracle's lock waits at most ~1 ms for the GIL, not 5 (benchmarks/chief_scale.py)."""
    import sys

    from tunecluster.cluster.chief import server

    class StubChief:
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            pass

        def terminate(self):
            pass

        def serve_until_done(self):
            return 0

    before = sys.getswitchinterval()
    monkeypatch.setattr(server, "Chief", StubChief)
    monkeypatch.setattr(server, "HeapFreezing", lambda: type("H", (), {"install": lambda self: None})())
    monkeypatch.setattr(server.signal, "signal", lambda *args: None)
    try:
        assert server.run_chief(None, "unused", "127.0.0.1", 0) == 0
        assert sys.getswitchinterval() == server.GIL_SWITCH_S == 0.001
    finally:
        sys.setswitchinterval(before)
