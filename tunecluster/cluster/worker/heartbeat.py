"""The worker's side of leases and idling: heartbeats that carry its progress to the chief (and
renew its trial's lease), and the back-off between IDLE answers (stock Keras Tuner spins)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional


class Backoff:
    """Exponential back-off between IDLE answers: 50 ms doubling up to `maximum` seconds."""

    def __init__(self, first: float = 0.05, maximum: float = 1.0):
        self.first, self.maximum = first, maximum
        self.current = first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.first


class Heartbeat(threading.Thread):
    """Sends the worker's progress to the chief: soon after it changes, else every `interval`.

    Changes are coalesced: at most one beat per `min_gap` seconds (0.25), carrying the latest
    state. A worker whose trainings take milliseconds would otherwise send one or two beats per
    training (start, end), several times the calls of the work itself; the live view and the
    leases need a few per second at most. (A failed training's error travels with its WorkDone.)
    Epoch reports (`record_epoch`) ride on the same beats, every one of them: no call of their own.

    The chief paces its workers (`cluster/heartbeat_pacing.py`): an answer's `heartbeat_s` becomes
    the interval (never below the configured one); a paced worker beats at most once per interval."""

    def __init__(self, send: Callable[[dict], None], tuner_id: str, interval: float = 2.0,
                 min_gap: float = 0.25):
        super().__init__(name="heartbeat", daemon=True)
        self._send = send
        self._state: dict = {"tuner_id": tuner_id, "state": "starting"}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.interval = self.configured_interval = interval
        self.min_gap = self.configured_gap = min(min_gap, interval)
        self.sent = 0  # beats sent (tests, benchmarks)
        self.on_answer: Optional[Callable[[dict], None]] = None
        self._epochs: list[dict] = []  # epoch reports not yet sent (every one is, in order)

    def report(self, **fields) -> None:
        """The worker's latest progress (trial, epoch, metrics, state); sent with the next beat."""
        with self._lock:
            self._state.update(fields)
        self._wake.set()

    def record_epoch(self, work: str, epoch: int, metrics: dict) -> None:
        """One finished epoch of training `work`: unlike `report`, every one reaches the chief
        (the chief's curves and early stopping need them all), riding on the next beat."""
        with self._lock:
            self._epochs.append({"work": work, "epoch": epoch, "metrics": metrics})
        self._wake.set()

    def _send_once(self) -> None:
        with self._lock:
            state = dict(self._state)
            epochs, self._epochs = self._epochs, []
        if epochs:
            state["epoch_reports"] = epochs  # not "epochs": that is the training's length (report())
        try:
            answer = self._send({"method": "Heartbeat", **state})
        except Exception:
            with self._lock:  # sent again with the next beat, first
                self._epochs[:0] = epochs
            raise
        self.sent += 1
        if answer and answer.get("heartbeat_s"):
            self.pace(float(answer["heartbeat_s"]))
        if self.on_answer is not None and answer:
            self.on_answer(answer)

    def pace(self, interval: float) -> None:
        """Beat every `interval` seconds from now on (the chief's answer; at least the configured
        one). A chief that asks for a longer interval (many workers) gets at most one beat per
        interval: changes (a trial's start and end, epoch reports) ride on the next one."""
        interval = max(self.configured_interval, interval)
        self.interval = interval
        self.min_gap = self.configured_gap if interval <= self.configured_interval else interval

    def run(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            # changes that come faster than min_gap ride on one beat with the latest state
            self._stop.wait(max(0.0, last + self.min_gap - time.monotonic()))
            self._wake.clear()
            try:
                self._send_once()
            except Exception:  # the chief may be restarting; the next beat retries
                time.sleep(0.5)
            last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
