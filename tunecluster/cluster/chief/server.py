"""The chief: runs the spec's Keras Tuner oracle behind a multi-threaded gRPC server.

It reuses Keras Tuner's protos, oracles and `OracleServicer` (`servicer.py`) and adds what the
stock chief lacks: a thread pool instead of one thread; no TensorFlow import (the stand-in `keras`
of `kt_compat`); a token on the port and optional TLS (`cluster/auth.py`); trial leases renewed by
heartbeats (an expired lease puts the trial back in the queue and the old holder's late result is
refused, `cluster/leases.py`); oracle locks released even when the oracle raises; error messages
of failed trials and tunecluster's work protocol (`control_service.py`, `work_service.py`); a live
progress file and the results after every trial (`state_writer.py`); a reload of the saved state
when restarted (`recovery.py`: running trials are held for their workers for one lease period); a
clean exit on SIGTERM; and an exit within a second or two of the search's end (no 20-second polls).

Run it with `tunecluster chief`; it reads `KERASTUNER_ORACLE_IP` (the address to bind),
`KERASTUNER_ORACLE_PORT`, `TUNECLUSTER_SPEC`, `TUNECLUSTER_RUN_DIR` and the token/TLS variables.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Optional

import grpc

from tunecluster import kt_compat
from tunecluster.cluster.auth import Security, TokenInterceptor, server_credentials
from tunecluster.cluster.chief import recovery
from tunecluster.cluster.chief.book_journal import BookJournal
from tunecluster.cluster.chief.book import SearchBook
from tunecluster.cluster.chief.control_service import ControlService
from tunecluster.cluster.chief.heap_freezing import HeapFreezing
from tunecluster.cluster.chief.journal import replay_journals
from tunecluster.cluster.chief.servicer import ChiefServicer
from tunecluster.cluster.chief.state_writer import StateWriter
from tunecluster.cluster.chief.time_budget import TimeBudget
from tunecluster.cluster.chief.work_service import WorkService
from tunecluster.cluster.control import control_handler
from tunecluster.cluster.heartbeat_pacing import HeartbeatPacing
from tunecluster.cluster.leases import Leases
from tunecluster.core.errors import RunFailure
from tunecluster.core.rundir import RunDir
from tunecluster.kt_compat import internals, oracle_state
from tunecluster.tuning.spec import Experiment

log = logging.getLogger("tunecluster.chief")

# How long a thread keeps the GIL while another waits for it (CPython's default: 5 ms). A handler
# that holds the oracle's lock and is made to wait for the GIL makes every handler queued on the
# lock wait too; at 1,000 simulated workers, 1 ms instead of 5 cut the p99 of WorkDone from
# 49-73 ms to 28-30 ms and of Heartbeat from 20-38 ms to 10-13 ms for ~3 % more CPU per call
# (benchmarks/chief_scale.py; docs/performance.md).
GIL_SWITCH_S = 0.001


class Chief:
    """One chief process: builds the oracle, serves it, records progress, exits when done."""

    def __init__(self, spec: Experiment, run_dir: RunDir, bind: str, port: int,
                 security: Optional[Security] = None, space_wait: float = 5.0,
                 exit_grace: float = 3.0, export_timeout: float = 600.0):
        self.spec = spec
        self.run = run_dir
        self.bind = bind
        self.port = port
        self.security = security or Security()
        self.leases = Leases(spec.cluster.lease_timeout)
        self.terminated = threading.Event()
        self.space_wait = space_wait
        self.exit_grace = exit_grace
        self.export_timeout = export_timeout
        self.book = SearchBook(BookJournal(run_dir.root))
        self.writer = StateWriter(spec, run_dir, self.book, self.leases, f"{bind}:{port}")
        self.oracle = None
        self.servicer: Optional[ChiefServicer] = None
        self._server: Optional[grpc.Server] = None
        self._stop = threading.Event()

    # --- setup ----------------------------------------------------------------------------
    def _build_oracle(self):
        """The spec's oracle (a script's chief serves the script's own instead)."""
        from tunecluster.tuning.oracles import build_oracle
        from tunecluster.tuning.staged_oracle import build_staged_oracle

        return build_staged_oracle(self.spec) if self.spec.stages else build_oracle(self.spec.tuner)

    def _make_oracle(self):
        """The oracle on the run folder: a previous chief's journal replayed and its saved search
        reloaded (and repaired), its writes deferred to the state writer."""
        oracle = self._build_oracle()
        oracle_state.set_project_dir(oracle, str(self.run.kt_dir), self.spec.name)
        project = self.run.kt_project(self.spec.name)
        oracle_file = project / "oracle.json"
        replayed = replay_journals(str(project))  # before Keras Tuner reads the files
        if replayed:
            log.info("replayed %d trial states from the journal of the previous chief", replayed)
        if oracle_file.exists():
            oracle_state.reload(oracle)  # never overwrite=True: it would delete the shared project directory
            recovery.hold_for_their_workers(oracle, oracle_file, self.run.work, self.leases)
            log.info("resumed the search from %s (%d trials known, %d held for their workers, %d queued)",
                     self.run.kt_dir, len(oracle.trials), len(oracle.ongoing_trials),
                     len(oracle_state.queued(oracle)))
        oracle.verbose = 0
        self.writer.defer_oracle_saves(oracle)
        recovery.reload_book(self.book, self.run.results_json, self.run.root)
        return oracle

    def start(self) -> str:
        kt_compat.install("chief")  # the role's start-up: before anything imports Keras Tuner
        self.oracle = self._make_oracle()
        self.servicer = ChiefServicer(self.oracle, self.book, self.space_wait, self.leases)
        self.servicer.work = WorkService(self.servicer, self.spec,
                                         recovery.load_board(self.oracle, self.spec, self.run.work, self.leases))
        self.servicer.pacing = HeartbeatPacing(self.leases, self.spec.cluster.heartbeat_interval,
                                               self.spec.cluster.heartbeat_budget)
        self.servicer.budget = TimeBudget(self.spec.tuner.max_time, self.book)
        self.writer.servicer = self.servicer
        control = ControlService(self.servicer, self.book, self.snapshot)
        interceptors = []
        if self.security.insecure:
            log.warning("INSECURE: the oracle port accepts calls without a token; anyone who can "
                        "reach it can read and change the search")
        else:
            interceptors.append(TokenInterceptor(self.security.token))
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max(8, 2 * self.spec.cluster.workers + 4)),
            interceptors=interceptors,
            options=[("grpc.so_reuseport", 0)],
        )
        internals.protos().get_service_grpc().add_OracleServicer_to_server(self.servicer, server)
        server.add_generic_rpc_handlers((control_handler(control),))
        address = f"{self.bind}:{self.port}"
        credentials = server_credentials(self.security)
        try:
            if credentials is not None:
                bound = server.add_secure_port(address, credentials)
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise RunFailure(
                f"the chief cannot listen on {address} (port in use?); choose another port "
                "with cluster.port or stop whatever holds it"
            )
        server.start()
        self._server = server
        log.info("oracle (%s) listening on %s (%s, %s)", self.spec.tuner.kind, address,
                 "TLS" if credentials is not None else "plaintext",
                 "no token" if self.security.insecure else "token required")
        return address

    # --- state written for the CLI ---------------------------------------------------------
    def snapshot(self, view=None) -> dict:
        return self.writer.snapshot(view)

    def write_state(self, finished: bool = False, final: bool = True) -> None:
        self.writer.write_state(finished=finished, final=final)

    # --- main loop --------------------------------------------------------------------------
    def _lease_loop(self) -> None:
        period = min(1.0, self.leases.timeout / 4)  # (the timeout only grows past the spec's)
        while not self._stop.wait(period):
            try:
                self.servicer.expire_leases()
            except Exception:  # never let the monitor kill the chief
                log.exception("could not expire leases")

    def terminate(self) -> None:
        """Ask the main loop to save and exit (SIGTERM)."""
        self.terminated.set()
        with self.servicer.changed:
            self.servicer.changed.notify_all()

    def serve_until_done(self) -> int:
        """Block until the search is over and the best model exported (or SIGTERM); return the
        exit code: 0 the search ended (progress.json says how), 143 terminated before the end
        (resumable)."""
        threads = [threading.Thread(target=self.writer.loop, args=(self._stop,), name="state-writer", daemon=True),
                   threading.Thread(target=self._lease_loop, name="lease-monitor", daemon=True)]
        for thread in threads:
            thread.start()
        servicer = self.servicer
        complete_at = None
        resolved_at = None
        try:
            while not self.terminated.is_set():
                with servicer.changed:
                    servicer.changed.wait(timeout=0.5)
                if not servicer.search_complete():
                    complete_at = resolved_at = None
                    continue
                now = time.time()
                complete_at = complete_at or now
                with self.book.lock:
                    needs_export = bool(self.book.tunecluster_workers) and any(
                        t.status == "COMPLETED" for t in list(self.oracle.trials.values())
                    )
                    export_open = needs_export and self.book.export_state in (None, "claimed")
                if export_open and now - complete_at < self.export_timeout:
                    continue
                resolved_at = resolved_at or now
                # every worker heard STOPPED: one that waited on IDLE while the last trial ran, or
                # had not asked yet (a search shorter than a worker's start), asks within its
                # back-off; exit_grace bounds the wait for one that is gone
                with self.book.lock:
                    told = {w for w in self.book.tunecluster_workers
                            if self.book.workers.get(w, {}).get("state") in ("stopped", "done")}
                    untold = self.book.tunecluster_workers - told
                    if self.book.export_standby is not None:  # it waits for its "done" (control_service.Finish)
                        untold.add(self.book.export_standby)
                expected = self.spec.cluster.workers if self.book.tunecluster_workers else 0
                everyone_told = not self.oracle.tuner_ids and not untold and len(told) >= expected
                if everyone_told or now - resolved_at >= self.exit_grace:
                    break
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=5)
        if self.terminated.is_set():
            return self._shutdown()
        self.write_state(finished=True)
        if not self.spec.fit.keep_checkpoints:  # what is left: ASHA's rung checkpoints never promoted
            shutil.rmtree(self.run.checkpoints, ignore_errors=True)
        self._server.stop(grace=1.0).wait(2.0)
        # The search reached its end, even when it ended badly: exit 0 so that no supervisor
        # (Kubernetes' restartPolicy OnFailure, compose's on-failure) restarts a finished search.
        # progress.json says how it ended; the launchers report it (exit code 1).
        if self.book.search_failed:
            log.error("search stopped: %s", self.book.search_failed)
        elif self.book.export_state == "failed":
            log.error("exporting the best model failed: %s", self.book.export_message)
        else:
            log.info("search complete: %s", self.snapshot()["counts"])
        return 0

    def _shutdown(self) -> int:
        """SIGTERM: stop answering, save the oracle and the progress files, exit resumable."""
        self._server.stop(grace=2.0).wait(3.0)
        complete = self.servicer.search_complete()
        self.write_state(finished=False)  # saves oracle.json first
        log.info("terminated: state saved (%s); `tunecluster up --resume` or a restarted chief "
                 "continues the search", self.snapshot()["counts"])
        return 0 if complete and self.book.export_state == "done" else 143

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0)


def run_chief(spec: Experiment, run_dir: str | Path, bind: str, port: int,
              security: Optional[Security] = None) -> int:
    """The chief role: serve the search until it ends (or SIGTERM); return the exit code."""
    chief = Chief(spec, RunDir(run_dir), bind, port, security=security)
    HeapFreezing().install()  # full garbage collections that walk only what is new (heap_freezing.py)
    sys.setswitchinterval(GIL_SWITCH_S)
    chief.start()
    signal.signal(signal.SIGTERM, lambda *_: chief.terminate())
    return chief.serve_until_done()
