"""How often workers beat, and how long a lease lasts, for the number of workers the chief serves.

Every tunecluster worker sends a heartbeat every `cluster.heartbeat_interval` seconds (and soon
after its progress changes). With 1,000 workers at 2 s that is 500 calls/s for the chief's Python
handlers before any trial is handed out. The chief therefore keeps a budget of heartbeat calls per
second (`cluster.heartbeat_budget`, across all workers): once `workers / interval` would exceed
it, the interval told to every worker grows to `workers / budget`, in each heartbeat's answer
(`heartbeat_s`), and the lease timeout grows with it, keeping the spec's ratio
`lease_timeout / heartbeat_interval` (at least 3): a healthy worker never loses its trial because
the chief asked it to beat less often.

A lease timeout never shrinks faster than the workers learn a shorter interval: when workers leave
and the interval falls, the longer timeout is kept for one old timeout (a worker told the old,
longer interval beats at least once in that time and hears the new one).

Workers count when they beat within the current lease timeout; stock Keras Tuner workers send no
heartbeats and are not counted (their leases are untimed).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from tunecluster.cluster.leases import Leases


class HeartbeatPacing:
    """The heartbeat interval and lease timeout for the workers seen lately; sets `leases.timeout`."""

    def __init__(self, leases: Leases, interval: float, budget: float,
                 clock: Callable[[], float] = time.monotonic):
        self.leases = leases
        self.base_interval = interval
        self.base_lease = leases.timeout
        self.ratio = leases.timeout / interval  # >= 3 (the spec checks it)
        self.budget = budget
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # tuner id -> its last beat (monotonic)
        self._held_lease = leases.timeout  # the longest timeout still owed to slow beaters...
        self._held_until = 0.0  # ...until then
        self._pruned_at = 0.0

    def beat(self, tuner_id: str) -> float:
        """Record a worker's heartbeat; return the interval to tell it (seconds)."""
        now = self._clock()
        with self._lock:
            self._seen[tuner_id] = now
            if now - self._pruned_at >= 1.0:  # at most once a second: O(workers)
                self._prune(now)
            interval = self._interval()
            self._set_lease(interval, now)
            return interval

    def _prune(self, now: float) -> None:
        window = self.leases.timeout
        self._seen = {w: t for w, t in self._seen.items() if now - t <= window}
        self._pruned_at = now

    def _interval(self) -> float:
        return max(self.base_interval, len(self._seen) / self.budget)

    def _set_lease(self, interval: float, now: float) -> None:
        wanted = max(self.base_lease, self.ratio * interval)
        if wanted >= self._held_lease:
            self._held_lease, self._held_until = wanted, now + wanted
        elif now >= self._held_until:  # every worker has heard a shorter interval by now
            self._held_lease, self._held_until = wanted, now + wanted
        self.leases.timeout = self._held_lease

    def workers(self) -> int:
        with self._lock:
            return len(self._seen)

    def summary(self) -> dict:
        """For progress.json: what the chief tells its workers now."""
        with self._lock:
            return {"workers_beating": len(self._seen), "heartbeat_s": round(self._interval(), 3),
                    "lease_timeout_s": round(self.leases.timeout, 3), "budget_per_s": self.budget}
