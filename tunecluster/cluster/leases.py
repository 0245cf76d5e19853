"""Trial leases: which worker holds which running trial, and until when.

A tunecluster worker renews its lease with every heartbeat (`cluster.heartbeat_interval`). A lease
not renewed for `cluster.lease_timeout` expires: the chief takes the trial back and queues it for
the next worker that asks, and the old holder's late updates and result are refused, so no trial
is ever counted twice. Plain Keras Tuner workers send no heartbeats; their trials are held
untimed (Keras Tuner's own behaviour) and are never taken back.

This class only keeps the table; the chief decides what expiry does (see `chief/servicer.py` and `chief/work_service.py`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass
class Lease:
    trial_id: str
    tuner_id: str
    expires: float  # monotonic seconds; inf for untimed leases
    timed: bool


class Leases:
    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic):
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._by_trial: dict[str, Lease] = {}

    def grant(self, trial_id: str, tuner_id: str, timed: bool = True, grace: Optional[float] = None) -> None:
        expires = self._clock() + (grace if grace is not None else self.timeout) if timed else float("inf")
        with self._lock:
            self._by_trial[trial_id] = Lease(trial_id, tuner_id, expires, timed)

    def renew(self, trial_id: str, tuner_id: str) -> bool:
        """Extend the lease if `tuner_id` holds it; False if it does not (any more)."""
        with self._lock:
            lease = self._by_trial.get(trial_id)
            if lease is None or lease.tuner_id != tuner_id:
                return False
            if lease.timed:
                lease.expires = self._clock() + self.timeout
            return True

    def renew_holder(self, tuner_id: str) -> None:
        """Any sign of life from a worker renews every lease it holds."""
        with self._lock:
            for lease in self._by_trial.values():
                if lease.tuner_id == tuner_id and lease.timed:
                    lease.expires = self._clock() + self.timeout

    def holder(self, trial_id: str) -> Optional[str]:
        with self._lock:
            lease = self._by_trial.get(trial_id)
            return lease.tuner_id if lease else None

    def release(self, trial_id: str) -> Optional[Lease]:
        with self._lock:
            return self._by_trial.pop(trial_id, None)

    def expired(self) -> list[Lease]:
        now = self._clock()
        with self._lock:
            return [lease for lease in self._by_trial.values() if lease.expires <= now]

    def held(self) -> dict[str, str]:
        with self._lock:
            return {trial_id: lease.tuner_id for trial_id, lease in self._by_trial.items()}
