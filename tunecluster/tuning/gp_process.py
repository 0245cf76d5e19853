"""Computes Bayesian suggestions in a child process, so that they never take the chief's GIL.

Fitting the Gaussian process and optimising the acquisition (`gp_suggest`) is numpy and scipy
with a Python callback per L-BFGS-B step: in the chief's process it holds the interpreter lock
most of the time, and every other RPC being served meanwhile (UpdateTrial, heartbeats, EndTrial,
GetBestTrials) waits for its turn at each step of its own handling. Here the work runs in one
long-lived child process (`python -m tunecluster.tuning.gp_process`) that keeps each oracle's
fitted model between suggestions; the chief's thread only waits on a pipe, which releases the
lock. On a 2-core machine the suggestion gets one core and the chief the other.

The protocol is length-prefixed pickles over the child's stdin/stdout (both ends are this module
in the same installation; nothing listens on a port). The child exits when its stdin closes, i.e.
when the chief exits, however it exits. If the child cannot start or dies, `SuggestionProcess`
raises and the oracle computes in its own process instead (`bayesian_oracle`).

`compute()` is the pure computation, used by both sides.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from typing import BinaryIO, Optional

import numpy as np

from tunecluster.tuning import gp_batch, gp_suggest

_HEADER = struct.Struct("!Q")
KERNEL_SAMPLE = 500  # completed trials the kernel's length scale is optimised on, at most
MAX_OBSERVATIONS = 2000  # observations (completed and running trials) the model is conditioned on, at most


def compute(state: gp_suggest.GPState, request: dict) -> tuple[gp_suggest.GPState, dict]:
    """One model fit on the completed (and running) trials; its suggestion's candidate points, and
    with `count` > 1 a batch of that many points (`gp_batch`).

    `request`: x_done, y_done (minimised), x_running, dims, alpha, seed, beta, refit_growth, screen,
    starts, rng_seed, and optionally count (default 1), kernel_sample (`KERNEL_SAMPLE`) and
    max_observations (`MAX_OBSERVATIONS`). Returns the new state and {"points": [...],
    "batch": [[...], ...] (per point its candidates; batch[0] is points), "timing": {...}}.
    """
    started = time.perf_counter()
    dims = request["dims"]
    x, y, x_running = bounded_observations(request)
    if state.posterior is not None and state.posterior.x_train.shape[1] != dims:
        state = gp_suggest.GPState()  # the space grew: start over
    if len(x_running):
        # Running trials count as observations at the previous model's mean + std (Keras
        # Tuner's rule); before any model, at the worst score seen.
        if state.posterior is not None:
            mean, std = state.posterior.predict(x_running)
            pending = mean + std
        else:
            pending = np.full(len(x_running), np.nanmax(y) if np.isfinite(y).any() else 0.0)
        x = np.vstack([x, x_running])
        y = np.concatenate([y, pending])
    x = np.nan_to_num(x, posinf=0, neginf=0)
    y = np.nan_to_num(y, posinf=0, neginf=0)
    x_kernel, y_kernel = kernel_sample(request, len(x))
    with gp_suggest.single_threaded_blas():
        state = gp_suggest.fit(state, x, y, request["alpha"], request["seed"],
                               refit_growth=request["refit_growth"], x_kernel=x_kernel, y_kernel=y_kernel,
                               measured=None if x_kernel is None else len(request["x_done"]))
        fitted = time.perf_counter()
        best = np.argsort(request["y_done"])[:3]  # (all completed trials, not only those kept)
        rng = np.random.RandomState(request["rng_seed"])
        points = gp_suggest.suggest(state.posterior, dims, request["beta"], rng,
                                    screen=request["screen"], starts=request["starts"],
                                    extra_starts=request["x_done"][best])
        acquired = time.perf_counter()
        batch = gp_batch.batch(state.posterior, points, int(request.get("count", 1)), request["beta"], rng)
    timing = {"fit_s": fitted - started, "acquisition_s": acquired - fitted,
              "batch_s": time.perf_counter() - acquired, "count": len(batch),
              "observations": len(x), "kernel_optimized": state.optimized_now,
              "kernel_observations": len(x) if x_kernel is None else len(x_kernel)}
    return state, {"points": points, "batch": batch, "timing": timing}


def bounded_observations(request: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The completed (x, y) and running x the model is conditioned on: all of them up to
    `max_observations` (2,000) together; beyond, the exact Gaussian process (a Cholesky
    factorisation, cubic in the observations: 3 s at 4,000 here) would fall behind a large
    cluster, so at most a quarter of the bound goes to running trials (drawn at random) and the
    rest to the completed ones: the best half of that share by score (where the optimum is) and
    the most recent for the remainder (the model stays local where the search is)."""
    x, y, x_running = request["x_done"], request["y_done"], request["x_running"]
    cap = int(request.get("max_observations", MAX_OBSERVATIONS))
    if len(x) + len(x_running) <= cap:
        return x, y, x_running
    rng = np.random.RandomState(request["rng_seed"])
    if len(x_running) > cap // 4:
        x_running = x_running[np.sort(rng.choice(len(x_running), cap // 4, replace=False))]
    room = cap - len(x_running)
    if len(x) > room:
        best = np.argsort(np.nan_to_num(y, nan=np.inf), kind="stable")[: room // 2]
        rest = np.setdiff1d(np.arange(len(x)), best)
        keep = np.sort(np.concatenate([best, rest[len(rest) - (room - len(best)):]]))
        x, y = x[keep], y[keep]
    return x, y, x_running


def kernel_sample(request: dict, observations: int) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The observations the kernel is optimised on: None (all of them) in a search with no trial
    running and at most `kernel_sample` (500) completed, as in a serial search; otherwise the
    completed trials only (a running trial's pending value is the previous model's own guess, and
    a thousand of them would make every optimisation step a Cholesky factorisation of a thousand
    rows more), at most `kernel_sample` of them, drawn at random."""
    x_done = np.nan_to_num(request["x_done"], posinf=0, neginf=0)
    y_done = np.nan_to_num(request["y_done"], posinf=0, neginf=0)
    cap = int(request.get("kernel_sample", KERNEL_SAMPLE))
    if observations == len(x_done) and len(x_done) <= cap:
        return None, None
    if len(x_done) > cap:
        keep = np.sort(np.random.RandomState(request["rng_seed"]).choice(len(x_done), cap, replace=False))
        x_done, y_done = x_done[keep], y_done[keep]
    return x_done, y_done


def _write(stream: BinaryIO, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: BinaryIO):
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the other end closed the pipe")
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other end closed the pipe")
    return pickle.loads(data)  # noqa: S301 - our own parent/child, over an anonymous pipe


class SuggestionProcess:
    """The chief's side: one child process, requests one at a time (any thread may call)."""

    def __init__(self) -> None:
        self._process: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()

    def compute(self, key: str, request: dict) -> dict:
        """Run `compute` in the child with the model kept there under `key`; raises on any failure."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            try:
                _write(self._process.stdin, {"key": key, "request": request})
                answer = _read(self._process.stdout)
            except (OSError, EOFError, pickle.PickleError) as error:
                self._stop()
                raise RuntimeError(f"the suggestion process failed: {error}") from error
        if "error" in answer:
            raise RuntimeError(f"the suggestion process failed: {answer['error']}")
        return answer

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tunecluster.tuning.gp_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            try:
                process.kill()
                process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def close(self) -> None:
        with self._lock:
            self._stop()


_shared: Optional[SuggestionProcess] = None
_shared_lock = threading.Lock()


def shared() -> SuggestionProcess:
    """The process's one suggestion child (started at the first suggestion)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SuggestionProcess()
        return _shared


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The child's loop: answer requests until the parent closes the pipe."""
    states: dict[str, gp_suggest.GPState] = {}
    while True:
        try:
            message = _read(requests)
        except EOFError:
            return
        key = message["key"]
        try:
            state, answer = compute(states.get(key, gp_suggest.GPState()), message["request"])
            states[key] = state
        except Exception as error:  # noqa: BLE001 - reported to the parent, which falls back
            answer = {"error": f"{type(error).__name__}: {error}"}
        _write(answers, answer)


if __name__ == "__main__":
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    serve(requests, answers)
