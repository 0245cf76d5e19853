"""core/pacing.py: a thread inside `pacing()` pauses every slice of work at its pause points, so
that the threads waiting for the GIL (the chief's RPC handlers) run; anywhere else, and after the
block, a pause point does nothing."""

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
