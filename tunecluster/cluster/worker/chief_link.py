"""A worker's calls to the chief: short deadlines, retries with back-off while the chief is away
(restarting, rescheduled), and a clear end when it stays away.

Keras Tuner's client waits up to 60 minutes on every call. Here each attempt has a deadline of
its own; UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED (a chief shedding load) are retried with
back-off (0.2 s doubling to at most 1 s, and the channel redials at least every second) until the chief has been
unreachable for `chief_timeout` seconds, then `ChiefUnreachable` says so. A refused token becomes
a one-line usage error, and a refused result (the trial's lease was lost) becomes `ResultRefused`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

import grpc

from tunecluster.core.errors import RunFailure, UsageError

log = logging.getLogger("tunecluster.link")

# CANCELLED: a chief under load sheds calls its Python server has not taken up yet (gRPC's C core
# answers them CANCELLED at once; measured from 3,000 simulated workers on, benchmarks/chief_scale.py).
# The link never cancels its own calls, so it is the chief's and the call may be tried again.
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


class ChiefUnreachable(RunFailure):
    """The chief did not answer for the whole `chief_timeout`."""


class ResultRefused(Exception):
    """The chief refused a trial's update or result: the trial is no longer leased to us."""


class ChiefLink:
    """Runs one gRPC call with retries (see the module docstring)."""

    def __init__(self, address: str, chief_timeout: float, *, first_backoff: float = 0.2,
                 max_backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep, quiet: bool = False):
        self.address = address
        self.quiet = quiet  # no outage warnings (the heartbeats': the worker's own calls report it)
        self.chief_timeout = chief_timeout
        self.first_backoff, self.max_backoff = first_backoff, max_backoff
        self._sleep = sleep
        self.reconnects = 0

    def call(self, method: Callable, request: Any, *, timeout: float, what: str) -> Any:
        down_since: Optional[float] = None
        delay = self.first_backoff
        while True:
            attempt_started = time.monotonic()
            budget = self.chief_timeout - (attempt_started - down_since if down_since else 0)
            try:
                response = method(request, timeout=max(1.0, min(timeout, budget)), wait_for_ready=True)
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    raise UsageError(
                        f"the chief at {self.address} refused this worker ({exc.details()}); give every "
                        "role the experiment's token (TUNECLUSTER_TOKEN_FILE or TUNECLUSTER_TOKEN)"
                    ) from None
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    raise ResultRefused(exc.details()) from None
                if code not in RETRIED:
                    raise
                now = time.monotonic()
                if down_since is None:
                    down_since = attempt_started
                    if not self.quiet:
                        log.warning("%s: the chief at %s does not answer (%s); retrying for up to %.0f s",
                                    what, self.address, code.name, self.chief_timeout)
                if now - down_since >= self.chief_timeout:
                    raise ChiefUnreachable(
                        f"the chief at {self.address} has not answered for {self.chief_timeout:.0f} s "
                        f"(last error: {code.name}: {exc.details()}); check that the chief runs and "
                        "that KERASTUNER_ORACLE_IP/PORT (and TLS settings) point at it"
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            if down_since is not None:
                self.reconnects += 1
                if not self.quiet:
                    log.warning("%s: the chief at %s answers again after %.1f s", what, self.address,
                                time.monotonic() - down_since)
            return response


# Deadlines per attempt for Keras Tuner's RPCs (CreateTrial may run a Bayesian fit on the chief).
ORACLE_TIMEOUTS = {"CreateTrial": 120.0, "EndTrial": 60.0, "UpdateTrial": 60.0, "GetBestTrials": 60.0}


class ResilientStub:
    """Keras Tuner's `OracleStub` with every method called through a `ChiefLink`."""

    def __init__(self, stub, link: ChiefLink, default_timeout: float = 30.0):
        self._stub = stub
        self._link = link
        self._default = default_timeout

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)
        timeout = ORACLE_TIMEOUTS.get(name, self._default)

        def call(request, **_ignored):  # Keras Tuner passes its own timeout and wait_for_ready
            return self._link.call(method, request, timeout=timeout, what=name)

        return call
