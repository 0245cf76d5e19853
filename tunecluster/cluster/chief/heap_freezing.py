"""Python's full garbage collections, kept short on a chief with a large heap.

CPython runs a full (generation 2) collection whenever the objects that survived the younger
generations grew by a quarter of the heap, and a full collection walks every tracked object while
holding the GIL: nothing else in the chief runs. A chief's heap grows with the search (each trial
keeps Keras Tuner's `Trial`, its hyperparameters and metrics), so these pauses grow with it:
measured at 1000 simulated workers with 10 s trials, a full collection every ~7 s took 17 ms at
the start and 513 ms at ~6000 trials, each finding nothing to free; they were the chief's p99.

`HeapFreezing` freezes the survivors of each full collection (`gc.freeze()`: the objects move to
a permanent generation that collections skip, while reference counting still frees them), so the
next full collections walk only what the search created since. Garbage that a frozen object
leaves in a reference cycle is not collected then; every `sweep_every` seconds (10 minutes by
default) the frozen objects are released again (`gc.unfreeze()`) and the next full collection
walks the whole heap and frees it: one long pause per sweep instead of one per quarter of
growth, and at most `sweep_every` of such garbage kept.
"""

from __future__ import annotations

import gc
import time
from typing import Callable

SWEEP_EVERY_S = 600.0


class HeapFreezing:
    """Installed as a `gc.callbacks` entry: freezes after each full collection, sweeps the whole
    heap every `sweep_every` seconds."""

    def __init__(self, sweep_every: float = SWEEP_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.sweep_every = sweep_every
        self.clock = clock
        self.last_sweep = clock()
        self.sweep_pending = False  # the frozen objects were released: the next full collection walks them
        self.freezes = 0
        self.sweeps = 0

    def __call__(self, phase: str, info: dict) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        # (the interpreter runs one collection at a time, so no lock is needed here)
        now = self.clock()
        if self.sweep_pending:  # this collection walked the whole heap
            self.sweep_pending = False
            self.last_sweep = now
            self.sweeps += 1
        elif now - self.last_sweep >= self.sweep_every:
            gc.unfreeze()  # the next full collection walks everything frozen since the last sweep
            self.sweep_pending = True
            return
        gc.freeze()
        self.freezes += 1

    def install(self) -> "HeapFreezing":
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self

    def uninstall(self) -> None:
        """Remove the callback and release every frozen object (tests; a chief keeps it to the end)."""
        if self in gc.callbacks:
            gc.callbacks.remove(self)
        gc.unfreeze()
