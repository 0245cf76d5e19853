"""The chief: runs the spec's Keras Tuner oracle behind a multi-threaded gRPC server.

It reuses Keras Tuner's protos, oracles and `OracleServicer` (answers built from a per-trial proto
cache, `trial_protos`; the oracle's per-call work made cheaper with the same results,
`oracle_speedups`), and adds what the stock chief lacks:
a thread pool instead of one thread, no TensorFlow import (see `keras_shim`), a token on the port
(and optional TLS, see `security`), trial leases renewed by heartbeats (an expired lease puts the
trial back in the queue and the old holder's late result is refused, see `leases`), oracle locks
that are released even when the oracle raises, error messages of failed trials, a live progress
file, results after every trial, a reload of the saved state when restarted (running trials are
held for their workers for one lease period), a clean exit on SIGTERM, and an exit within a second
or two of the search's end (no 20-second polls).

Run it with `tunecluster chief`; it reads `KERASTUNER_ORACLE_IP` (the address to bind),
`KERASTUNER_ORACLE_PORT`, `TUNECLUSTER_SPEC`, `TUNECLUSTER_RUN_DIR` and the token/TLS variables.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import grpc

from tunecluster.kt_compat import keras_stub
from tunecluster.cluster.control import control_handler
from tunecluster.cluster.leases import Leases
from tunecluster.cluster.security import Security, TokenInterceptor, caller_id, server_credentials
from tunecluster.kt_compat.trial_protos import TrialProtos
from tunecluster.core.rundir import RunDir, read_json, write_atomic, write_json
from tunecluster.cluster.work import DONE, FAILED, RUNNING, SEARCH, Board
from tunecluster.cluster.chief.work_service import ONGOING_PREFIX, WorkService
from tunecluster.core.errors import RunFailure
from tunecluster.tuning.spec import Experiment

log = logging.getLogger("tunecluster.chief")

INDENTED_UP_TO = 300  # trials: final state files of longer searches are written compact


class SearchBook:
    """The chief's own bookkeeping beside the oracle: who ran what and when, live progress."""

    def __init__(self):
        self.lock = threading.RLock()
        self.trial_meta: dict[str, dict] = {}
        self.workers: dict[str, dict] = {}
        self.tunecluster_workers: set[str] = set()
        self.export_state: Optional[str] = None  # None | "claimed" | "done" | "failed"
        self.exporter: Optional[str] = None
        self.export_message: Optional[str] = None
        self.last_failure: Optional[dict] = None
        self.search_failed: Optional[str] = None
        self.requeue_events: list[dict] = []
        self.refused_results = 0
        self.started_at = time.time()
        self.first_request_at: Optional[float] = None
        self.dirty = threading.Event()

    def touch(self) -> None:
        self.dirty.set()

    def trial_started(self, trial_id: str, tuner_id: str) -> None:
        with self.lock:
            meta = self.trial_meta.setdefault(trial_id, {})
            meta.update(worker=tuner_id, started=time.time(), ended=None)
            worker = self.workers.setdefault(tuner_id, {})
            worker.update(trial=trial_id, epoch=None, metrics={}, state="running", last_seen=time.time())
        self.touch()

    def trial_ended(self, trial_id: str, status: str) -> None:
        with self.lock:
            meta = self.trial_meta.setdefault(trial_id, {})
            meta["ended"] = time.time()
            meta["status"] = status
            worker = self.workers.get(meta.get("worker", ""))
            if worker is not None and worker.get("trial") == trial_id:
                worker.update(trial=None, epoch=None, state="idle")
        self.touch()

    def trial_requeued(self, trial_id: str, tuner_id: str, reason: str) -> None:
        with self.lock:
            meta = self.trial_meta.setdefault(trial_id, {})
            meta["requeues"] = meta.get("requeues", 0) + 1
            meta.update(ended=None, status="QUEUED")
            worker = self.workers.get(tuner_id)
            if worker is not None and worker.get("trial") == trial_id:
                worker.update(trial=None, epoch=None, state="lost trial")
            self.requeue_events.append({"trial_id": trial_id, "worker": tuner_id, "reason": reason,
                                        "at": time.time()})
        self.touch()

    def note(self, request: dict) -> dict:
        with self.lock:
            meta = self.trial_meta.setdefault(str(request.get("trial_id")), {})
            meta["error_type"] = request.get("error_type")
            meta["message"] = request.get("message")
            self.last_failure = {
                "trial_id": request.get("trial_id"),
                "worker": request.get("tuner_id"),
                "error_type": request.get("error_type"),
                "message": request.get("message"),
            }
        self.touch()
        return {}

    def heartbeat(self, request: dict) -> dict:
        tuner_id = str(request.get("tuner_id"))
        with self.lock:
            self.tunecluster_workers.add(tuner_id)
            worker = self.workers.setdefault(tuner_id, {"state": "starting", "restarts": 0})
            if "pid" in request and worker.get("pid") not in (None, request["pid"]):
                worker["restarts"] = worker.get("restarts", 0) + 1  # a new process with this id
            for key in ("trial", "epoch", "epochs", "metrics", "execution", "pid", "host"):
                if key in request:
                    worker[key] = request[key]
            if request.get("state"):
                worker["state"] = request["state"]
            worker["last_seen"] = time.time()
        self.touch()
        return {"ok": True}


class ChiefServicer:
    """Keras Tuner's OracleServicer with guarded oracle calls, leases and tunecluster's bookkeeping."""

    def __init__(self, oracle, book: SearchBook, space_wait: float, leases: Leases):
        from keras_tuner.src.distribute.oracle_chief import OracleServicer

        self._base = OracleServicer(oracle)
        self.oracle = oracle
        self.book = book
        self.leases = leases
        self.space_wait = space_wait
        self.stop_triggered = False
        self.changed = threading.Condition()
        self.work = None  # the WorkService of tunecluster workers (set by the Chief)
        self.protos = TrialProtos()

    # --- helpers -------------------------------------------------------------------------
    @contextlib.contextmanager
    def oracle_lock(self):
        """Hold Keras Tuner's per-oracle lock (re-entrant for this thread, like `@synchronized`)."""
        from keras_tuner.src.engine import oracle as oracle_module

        me = threading.current_thread().name
        acquired = oracle_module.THREADS.get(self.oracle) != me
        if acquired:
            oracle_module.LOCKS[self.oracle].acquire()
            oracle_module.THREADS[self.oracle] = me
        try:
            yield
        finally:
            if acquired and oracle_module.THREADS.get(self.oracle) == me:
                oracle_module.THREADS[self.oracle] = None
                oracle_module.LOCKS[self.oracle].release()

    def _guarded(self, context, func, *args, **kwargs):
        """Call an oracle method; whatever happens, never leave the oracle's lock held."""
        from keras_tuner.src.engine import oracle as oracle_module

        me = threading.current_thread().name
        held_before = oracle_module.THREADS.get(self.oracle) == me
        try:
            return func(*args, **kwargs)
        finally:
            if not held_before and oracle_module.THREADS.get(self.oracle) == me:
                oracle_module.THREADS[self.oracle] = None
                oracle_module.LOCKS[self.oracle].release()
                log.error("released the oracle lock after %s raised", getattr(func, "__name__", func))

    def _space_known(self) -> bool:
        return len(self.oracle.hyperparameters.space) > 0

    def _status_trial(self, status: str):
        from keras_tuner.src.engine import trial as trial_module

        return trial_module.Trial(self.oracle.get_space(), trial_id="", status=status)

    def _notify(self) -> None:
        self.book.touch()
        with self.changed:
            self.changed.notify_all()

    def ongoing_holder(self, trial_id: str) -> Optional[str]:
        for tuner_id, trial in self.oracle.ongoing_trials.items():
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    def _refuse_unless_held(self, context, trial_id: str, what: str) -> None:
        """Abort with FAILED_PRECONDITION unless the caller (still) holds `trial_id`.
        Must be called with the oracle lock held, right before the oracle acts on the trial."""
        import grpc

        holder = self.ongoing_holder(trial_id)
        caller = caller_id(context)
        if holder is not None and (caller is None or caller == holder):
            return
        if holder is None:
            reason = f"trial {trial_id} is not running any more (its lease expired or it already ended)"
        else:
            reason = f"trial {trial_id} is now held by {holder}"
        with self.book.lock:
            self.book.refused_results += 1
        log.warning("refused %s of trial %s from %s: %s", what, trial_id, caller or "a worker", reason)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{reason}; {what} refused")

    def requeue(self, trial_id: str, tuner_id: str, reason: str) -> bool:
        """Take a running trial back from `tuner_id` and queue it for the next worker."""
        with self.oracle_lock():
            ongoing = self.oracle.ongoing_trials.get(tuner_id)
            if ongoing is None or ongoing.trial_id != trial_id:
                self.leases.release(trial_id)
                return False
            self.oracle.ongoing_trials.pop(tuner_id)
            self.oracle._retry_queue.append(trial_id)
            self.leases.release(trial_id)
            self.oracle.save()
        log.warning("trial %s taken back from %s and queued again: %s", trial_id, tuner_id, reason)
        self.book.trial_requeued(trial_id, tuner_id, reason)
        self._notify()
        return True

    def expire_leases(self) -> int:
        expired = self.leases.expired()
        for lease in expired:
            reason = f"no heartbeat from {lease.tuner_id} for {self.leases.timeout:g} s (lease expired)"
            if self.work is not None and self.work.owns(lease.trial_id):
                self.work.give_back(lease.trial_id, lease.tuner_id, reason)
            else:
                self.requeue(lease.trial_id, lease.tuner_id, reason)
        return len(expired)

    # --- Keras Tuner's RPCs ---------------------------------------------------------------
    def GetSpace(self, request, context):
        return self._guarded(context, self._base.GetSpace, request, context)

    def UpdateSpace(self, request, context):
        return self._guarded(context, self._base.UpdateSpace, request, context)

    def CreateTrial(self, request, context):
        from keras_tuner.src import protos

        tuner_id = request.tuner_id
        caller = caller_id(context)
        if caller is not None and caller != tuner_id:
            import grpc

            context.abort(grpc.StatusCode.PERMISSION_DENIED, "tuner_id differs from the caller's id")
        trial = self.new_trial(tuner_id, timed_lease=caller is not None)
        return protos.get_service().CreateTrialResponse(trial=self.protos.to_proto(trial))

    def new_trial(self, tuner_id: str, timed_lease: bool = True):
        """A trial for `tuner_id` (RUNNING, or a status trial: IDLE / STOPPED): the oracle's
        `create_trial`, the trial's lease and the chief's bookkeeping, in one place.

        The oracle lock is not held around `create_trial`: the oracle takes it itself, and
        tunecluster's Bayesian oracle (`fast_oracles`) leaves it while its model fits, so reads,
        updates, results and heartbeats of other workers never wait behind a suggestion.
        `timed_lease=False` is for plain Keras Tuner workers (no heartbeats: held untimed)."""
        from keras_tuner.src.engine import trial as trial_module

        now = time.time()
        with self.book.lock:
            if self.book.first_request_at is None:
                self.book.first_request_at = now
            waited = now - self.book.first_request_at
            failed = self.book.search_failed
        if failed:
            self.stop_triggered = True
            self.oracle.tuner_ids.discard(tuner_id)
            self._notify()
            return self._status_trial(trial_module.TrialStatus.STOPPED)
        if not self._space_known() and tuner_id not in self.oracle.ongoing_trials:
            # tunecluster workers send the space before their first request; a plain Keras
            # Tuner worker never does, so after `space_wait` one trial runs with the defaults
            # and its end reports the space (Keras Tuner's own behaviour).
            if waited < self.space_wait or self.oracle.ongoing_trials:
                return self._status_trial(trial_module.TrialStatus.IDLE)
        trial = self._guarded(None, self.oracle.create_trial, tuner_id)
        status = trial.status
        if status == trial_module.TrialStatus.RUNNING:
            with self.oracle_lock():
                ongoing = self.oracle.ongoing_trials.get(tuner_id)
                if ongoing is not None and ongoing.trial_id == trial.trial_id:
                    if not self.leases.renew(trial.trial_id, tuner_id):
                        self.leases.grant(trial.trial_id, tuner_id, timed=timed_lease)
            meta = self.book.trial_meta.get(trial.trial_id)
            if meta is None or meta.get("worker") != tuner_id or meta.get("ended") or meta.get("status") == "QUEUED":
                self.book.trial_started(trial.trial_id, tuner_id)
        elif status == trial_module.TrialStatus.STOPPED:
            self.stop_triggered = True
            with self.book.lock:
                worker = self.book.workers.setdefault(tuner_id, {})
                worker.update(state="stopped", trial=None, last_seen=time.time())
        self._notify()
        return trial

    def UpdateTrial(self, request, context):
        from keras_tuner.src import protos

        with self.oracle_lock():
            self._refuse_unless_held(context, request.trial_id, "update")
            trial = self._guarded(context, self.oracle.update_trial, request.trial_id, request.metrics,
                                  step=request.step)
            response = protos.get_service().UpdateTrialResponse(trial=self.protos.to_proto(trial))
        self._notify()
        return response

    def EndTrial(self, request, context):
        from keras_tuner.src import protos
        from keras_tuner.src.engine import trial as trial_module

        trial_id = request.trial.trial_id
        with self.oracle_lock():
            self._refuse_unless_held(context, trial_id, "result")
            try:
                ended = self.protos.from_proto(request.trial, self.oracle.trials.get(trial_id))
                self._guarded(context, self.oracle.end_trial, ended)
            except RuntimeError as exc:
                if "consecutive failures" not in str(exc):
                    raise
                # Keras Tuner raises here on every later call; stop the search cleanly instead.
                reason = str(exc).splitlines()[0]
                with self.book.lock:
                    self.book.search_failed = reason
                log.error("stopping the search: %s", reason)
                for tuner_id, ongoing in list(self.oracle.ongoing_trials.items()):
                    if ongoing.trial_id == trial_id:
                        self.oracle.ongoing_trials.pop(tuner_id)
                trial = self.oracle.trials.get(trial_id)
                if trial is not None:
                    self.oracle._save_trial(trial)
                self.oracle.save()
            if self.ongoing_holder(trial_id) is None:
                self.leases.release(trial_id)
        trial = self.oracle.trials.get(trial_id)
        status = trial.status if trial is not None else trial_module.TrialStatus.from_proto(request.trial.status)
        if status != trial_module.TrialStatus.RUNNING:
            self.protos.forget(trial_id)
        self.book.trial_ended(trial_id, status)
        self._notify()
        return protos.get_service().EndTrialResponse()

    def GetTrial(self, request, context):
        from keras_tuner.src import protos

        with self.oracle_lock():
            trial = self._guarded(context, self.oracle.get_trial, request.trial_id)
            return protos.get_service().GetTrialResponse(trial=self.protos.to_proto(trial))

    def GetBestTrials(self, request, context):
        from keras_tuner.src import protos

        # Under the lock: Keras Tuner's get_best_trials is not synchronized, and a trial being
        # ended has its status before its score (sorting it would raise).
        with self.oracle_lock():
            trials = self._guarded(context, self.oracle.get_best_trials, request.num_trials)
            return protos.get_service().GetBestTrialsResponse(trials=[self.protos.to_proto(t) for t in trials])

    # --- search state ---------------------------------------------------------------------
    def search_complete(self) -> bool:
        if self.oracle.ongoing_trials or self.oracle._retry_queue:
            return False
        if self.work is not None and self.work.busy():
            return False
        return self.stop_triggered or bool(self.book.search_failed)


class ControlService:
    """The chief's side of tunecluster's control RPCs (see `control.py`)."""

    def __init__(self, servicer: ChiefServicer, book: SearchBook, snapshot):
        self.servicer = servicer
        self.book = book
        self.snapshot = snapshot

    def Heartbeat(self, request: dict) -> dict:
        """Record the worker's progress and renew its leases; name a trial it no longer holds."""
        self.book.heartbeat(request)
        tuner_id = str(request.get("tuner_id"))
        leases = self.servicer.leases
        leases.renew_holder(tuner_id)
        trial_id = request.get("work") or request.get("trial")
        if trial_id and request.get("state") == "running" and leases.holder(str(trial_id)) != tuner_id:
            return {"ok": True, "revoked": str(trial_id)}
        return {"ok": True}

    def Release(self, request: dict) -> dict:
        """A worker shutting down gives its trial back: it goes to the front of the queue."""
        tuner_id, trial_id = str(request.get("tuner_id")), str(request.get("trial_id"))
        reason = f"{tuner_id} gave it back ({request.get('reason', 'shutting down')})"
        work = self.servicer.work
        if work is not None and work.owns(trial_id):
            done = work.give_back(trial_id, tuner_id, reason)
        else:
            done = self.servicer.requeue(trial_id, tuner_id, reason)
        with self.book.lock:
            worker = self.book.workers.setdefault(tuner_id, {})
            worker.update(state="stopped", trial=None, last_seen=time.time())
        return {"requeued": done}

    def TrialNote(self, request: dict) -> dict:
        return self.book.note(request)

    def Status(self, request: dict) -> dict:
        return self.snapshot()

    def SetSpace(self, request: dict) -> dict:
        from keras_tuner.src.engine import hyperparameters as hp_module

        hps = hp_module.HyperParameters.from_config(request["hyperparameters"])
        self.servicer._guarded(None, self.servicer.oracle.update_space, hps)
        if self.servicer.work is not None:
            self.servicer.work.note_space()
        self.servicer._notify()
        return {"size": len(self.servicer.oracle.hyperparameters.space)}

    def NextWork(self, request: dict) -> dict:
        return self.servicer.work.next_work(request)

    def WorkDone(self, request: dict) -> dict:
        """A training's result; with `next`, the answer also carries the worker's next unit (what
        NextWork would answer), saving the worker a round trip per training. With `space`, the
        hyperparameters the training registered (a conditional layer, or a run_trial function's
        whole space) join the search first, so that the next trial is drawn from them."""
        if request.get("space") is not None:
            self.SetSpace({"hyperparameters": request["space"]})
        reply = self.servicer.work.work_done(request)
        if request.get("next") and reply.get("accepted"):
            reply["next"] = self.servicer.work.next_work({"tuner_id": request.get("tuner_id")})
        return reply

    def Finish(self, request: dict) -> dict:
        tuner_id = str(request.get("tuner_id"))
        with self.book.lock:
            self.book.tunecluster_workers.add(tuner_id)
            if not self.servicer.search_complete():
                # A trial taken back from a lost worker waits in the queue: run it.
                work = self.servicer.work
                pending = bool(self.servicer.oracle._retry_queue) or (work is not None and work.board.has_pending())
                return {"state": "resume" if pending else "wait"}
            has_result = any(
                t.status == "COMPLETED" for t in list(self.servicer.oracle.trials.values())
            )
            if self.book.export_state is None and has_result:
                self.book.export_state = "claimed"
                self.book.exporter = tuner_id
                self.book.touch()
                return self._export()
            if self.book.export_state == "claimed" and self.book.exporter == tuner_id:
                return self._export()  # the exporter asked again (e.g. it was restarted)
            if self.book.export_state == "claimed" and has_result:
                seen = self.book.workers.get(self.book.exporter, {}).get("last_seen") or 0
                if time.time() - seen > self.servicer.leases.timeout:  # the exporter is gone
                    log.warning("%s stopped answering while exporting; %s exports instead",
                                self.book.exporter, tuner_id)
                    self.book.exporter = tuner_id
                    self.book.touch()
                    return self._export()
            worker = self.book.workers.setdefault(tuner_id, {})
            worker["state"] = "done"
            return {"state": "done"}

    def _export(self) -> dict:
        work = self.servicer.work
        return {"state": "export", "choice": work.export_choice() if work is not None else None}

    def ExportDone(self, request: dict) -> dict:
        with self.book.lock:
            self.book.export_state = "done" if request.get("ok") else "failed"
            self.book.export_message = request.get("message")
            worker = self.book.workers.setdefault(str(request.get("tuner_id")), {})
            worker["state"] = "done"
        self.servicer._notify()
        return {}


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
        self.book = SearchBook()
        self.oracle = None
        self.servicer: Optional[ChiefServicer] = None
        self._server: Optional[grpc.Server] = None
        self._stop = threading.Event()
        self._oracle_dirty = threading.Event()
        self._save_oracle_now = None  # the oracle's own save (its `save` only marks it dirty)
        self._trial_writes = None  # running trials' trial.json, written by the state writer
        self._rows_cache: dict = {}  # results.json rows of unchanged trials, between writes

    # --- setup ----------------------------------------------------------------------------
    def _make_oracle(self):
        keras_stub.install()
        import keras_tuner.src.utils as kt_utils

        from tunecluster.kt_compat import hyperparameters as fast_hp

        fast_hp.install()  # every CreateTrial copies the space

        from tunecluster.tuning.oracles import build_oracle

        # Keras Tuner writes oracle.json and trial.json in place; make those writes atomic.
        kt_utils.save_json = _atomic_save_json
        oracle = build_oracle(self.spec.tuner)
        oracle._set_project_dir(str(self.run.kt_dir), self.spec.name)
        oracle_file = self.run.kt_project(self.spec.name) / "oracle.json"
        from tunecluster.kt_compat.oracle_methods import replay_journals

        replayed = replay_journals(str(self.run.kt_project(self.spec.name)))  # before Keras Tuner reads the files
        if replayed:
            log.info("replayed %d trial states from the journal of the previous chief", replayed)
        if oracle_file.exists():
            oracle.reload()  # never overwrite=True: it would delete the shared project directory
            self._hold_for_their_workers(oracle, oracle_file)
            log.info("resumed the search from %s (%d trials known, %d held for their workers, %d queued)",
                     self.run.kt_dir, len(oracle.trials), len(oracle.ongoing_trials), len(oracle._retry_queue))
        oracle.verbose = 0
        self._defer_oracle_saves(oracle)
        self._reload_book()
        return oracle

    def _defer_oracle_saves(self, oracle) -> None:
        """Keras Tuner rewrites oracle.json (which grows with the trial count) on every
        CreateTrial, EndTrial and space update, and a trial's trial.json on CreateTrial, on each
        UpdateTrial and on EndTrial, under the oracle lock: the largest cost of the chief per
        trial. Here `oracle.save()` only marks it dirty, and trial.json files wait for the state
        writer too (`oracle_methods.TrialWrites`), which writes them at most every ~0.5 s (the
        trials first, then oracle.json, then the work board), and always at the end and on
        SIGTERM. A new trial's first state and an ended trial's state are appended to the
        project's journal before the call returns, and replayed into the trial files when a
        chief starts. A chief killed with SIGKILL loses at most the last ~0.5 s of running
        trials' progress and of oracle.json; `_hold_for_their_workers` repairs that from the
        trial files."""
        from tunecluster.kt_compat import oracle_methods
        from tunecluster.tuning.bayesian_oracle import oracle_lock

        self._save_oracle_now = oracle.save
        oracle.save = self._oracle_dirty.set  # an instance attribute: Keras Tuner calls self.save()
        self._trial_writes = oracle_methods.install(oracle, lambda: oracle_lock(oracle))

    def flush_oracle(self, force: bool = False) -> None:
        """Write the marked trial.json files and oracle.json if they changed since the last write
        (or `force`). Both are read under the oracle lock, in one consistent state, and written
        outside it: trials first, so oracle.json never names a trial that has no file."""
        if self._save_oracle_now is None:
            return
        oracle_changed = force or self._oracle_dirty.is_set()
        if not oracle_changed and not self._trial_writes.pending():
            return
        trials = self._trial_writes.capture()  # each under the lock, not all at once
        with self.servicer.oracle_lock():
            self._oracle_dirty.clear()
            trials += self._trial_writes.capture(locked=True)  # created meanwhile
            ended, journal = self._trial_writes.take_journaled()  # every state oracle.json names
            oracle_text = json.dumps(self.oracle.get_state()) if oracle_changed else None
        self._trial_writes.write(trials + ended)
        if oracle_text is not None:
            write_atomic(self.oracle._get_oracle_fname(), oracle_text, fsync=False)
        self._trial_writes.retire(journal)  # its states are in their files now

    def _hold_for_their_workers(self, oracle, oracle_file: Path) -> None:
        """Keras Tuner's reload queues every trial that was running. A worker that kept training
        while the chief was away should still deliver its result, so each such trial stays with
        its worker under a fresh lease; if that worker does not renew it, it is queued again."""
        try:
            ongoing = json.loads(oracle_file.read_text()).get("ongoing_trials", {})
        except (OSError, ValueError):
            return
        ended = ("COMPLETED", "FAILED", "INVALID")
        for tuner_id, trial_id in list(ongoing.items()):
            trial = oracle.trials.get(trial_id)
            if trial is not None and trial.status in ended:
                # oracle.json was saved before this trial ended (saves are coalesced): its
                # trial.json has the result; keep it ended
                ongoing.pop(tuner_id)
                while trial_id in oracle._retry_queue:
                    oracle._retry_queue.remove(trial_id)
                if trial_id not in oracle.end_order:
                    oracle.end_order.append(trial_id)
        on_board = {u.get("trial_id") for u in (read_json(self.run.work) or {}).get("units", [])
                    if u.get("kind") == SEARCH}
        for tuner_id, trial_id in ongoing.items():
            if tuner_id.startswith(ONGOING_PREFIX):
                if trial_id not in on_board or trial_id not in oracle._retry_queue or trial_id not in oracle.trials:
                    # created after the saved board was read (the board is saved after
                    # oracle.json): no execution of it is known, so it stays queued and runs anew
                    continue
                # its executions are on the work board; the units that were running stay leased below
                oracle._retry_queue.remove(trial_id)
                oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]
                oracle.trials[trial_id].status = "RUNNING"
                continue
            if trial_id in oracle._retry_queue and trial_id in oracle.trials:
                oracle._retry_queue.remove(trial_id)
                oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]
                oracle.trials[trial_id].status = "RUNNING"
                oracle.tuner_ids.add(tuner_id)
                self.leases.grant(trial_id, tuner_id, timed=True)
        # Trials started after the last oracle.json write (saves are coalesced): RUNNING in their
        # trial.json, unknown to oracle.json. With executions on the saved work board they are
        # held like the others; else they go back to the queue.
        known = {t.trial_id for t in oracle.ongoing_trials.values()} | set(oracle._retry_queue)
        for trial_id, trial in sorted(oracle.trials.items()):
            if trial.status != "RUNNING" or trial_id in known:
                continue
            if trial_id not in oracle.start_order:
                oracle.start_order.append(trial_id)
            if trial_id in on_board:
                oracle.ongoing_trials[ONGOING_PREFIX + trial_id] = trial
            else:
                oracle._retry_queue.append(trial_id)

    def _reload_book(self) -> None:
        """On resume, keep who ran the earlier trials and when (from the last results.json)."""
        from datetime import datetime

        document = read_json(self.run.results_json) or {}
        for row in document.get("trials", []):
            if row.get("status") == "QUEUED":
                continue
            meta = {k: row.get(k) for k in ("worker", "error_type", "message", "status")}
            meta["requeues"] = row.get("requeues", 0)
            for key in ("started", "ended"):
                meta[key] = datetime.fromisoformat(row[key]).timestamp() if row.get(key) else None
            self.book.trial_meta[row["trial_id"]] = meta

    def _load_board(self) -> Board:
        """The work board: fresh, or the saved one of an interrupted run (its running units stay
        with their workers under a fresh lease, like trials)."""
        seed, executions = self.spec.tuner.seed, self.spec.tuner.executions_per_trial
        saved = read_json(self.run.work)
        if not saved:
            return Board(seed, executions)
        board = Board.from_dict(saved, seed, executions)
        # The board is saved after the trials' states, and a trial's end is in the journal the
        # moment it happens: a unit the board shows pending or running may belong to a trial
        # that ended since. It must not run again (the trial would end twice).
        settled = []
        for trial_id, trial in list(self.oracle.trials.items()):
            if trial.status in ("COMPLETED", "FAILED", "INVALID"):
                settled += board.settle_ended(trial_id, DONE if trial.status == "COMPLETED" else FAILED)
        if settled:
            log.info("the saved work board predates the end of %s: closed", ", ".join(settled))
        for unit in board.units.values():
            if unit.state == RUNNING and unit.worker:
                self.leases.grant(unit.key, unit.worker, timed=True)
        return board

    def start(self) -> str:
        self.oracle = self._make_oracle()
        self.servicer = ChiefServicer(self.oracle, self.book, self.space_wait, self.leases)
        self.servicer.work = WorkService(self.servicer, self.spec, self._load_board())
        control = ControlService(self.servicer, self.book, self.snapshot)
        from keras_tuner.src import protos

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
        protos.get_service_grpc().add_OracleServicer_to_server(self.servicer, server)
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
    def _oracle_view(self) -> SimpleNamespace:
        """What the state files read from the oracle, as copies: the handlers keep adding trials
        while they are written, and a Python loop over the live dict would fail ("dictionary
        changed size during iteration"). `dict()`/`list()` copy in one step under the GIL."""
        oracle = self.oracle
        return SimpleNamespace(trials=dict(oracle.trials), _retry_queue=list(oracle._retry_queue),
                               max_trials=oracle.max_trials, objective=oracle.objective)

    def snapshot(self, view: Optional[SimpleNamespace] = None) -> dict:
        from tunecluster.tuning.results import best_trial_summary, count_statuses

        view = view or self._oracle_view()
        counts, best = count_statuses(view.trials.values()), best_trial_summary(view)
        work = self.servicer.work
        work_summary, warnings = work.summary(), list(work.warnings)
        with self.book.lock:
            workers = {k: dict(v) for k, v in sorted(self.book.workers.items())}
            return {
                "experiment": self.spec.name,
                "tuner": self.spec.tuner.kind,
                "objective": self.spec.tuner.objective,
                "direction": self.spec.tuner.direction,
                "max_trials": view.max_trials,
                "counts": counts,
                "best": best,
                "workers": workers,
                "queued": view._retry_queue,
                "leases": self.leases.held(),
                "requeued": len(self.book.requeue_events),
                "refused_results": self.book.refused_results,
                "last_failure": self.book.last_failure,
                "search_failed": self.book.search_failed,
                "export": {"state": self.book.export_state, "by": self.book.exporter,
                           "message": self.book.export_message},
                "started_at": self.book.started_at,
                "updated_at": time.time(),
                "finished": False,
                "chief_address": f"{self.bind}:{self.port}",
                "work": work_summary,
                "warnings": warnings,
            }

    def write_state(self, finished: bool = False, final: bool = True) -> None:
        """Marked trial.json files and oracle.json (when changed), the work board, progress.json
        and the results. `final=False` (the periodic writes during the search): compact JSON, no
        fsync; the atomic renames still leave whole files if the chief is killed. The documents
        are built from copies, outside the chief's locks, so that no RPC waits for them."""
        from tunecluster.tuning.results import results_document, write_results

        # The board is read first and written last: a trial gets its units after the oracle
        # created (and marked) it, so the flush below writes every trial the board names, and
        # oracle.json too, before the board's file: a restarted chief knows all of them.
        board = self.servicer.work.board.to_dict()
        self.flush_oracle(force=final)
        view = self._oracle_view()
        snap = self.snapshot(view)
        snap["finished"] = finished
        with self.book.lock:
            meta = {trial_id: dict(entry) for trial_id, entry in self.book.trial_meta.items()}
        document = results_document(self.spec, view, meta, finished, work=self.servicer.work,
                                    rows_cache=self._rows_cache)
        # indented JSON takes json's pure-Python encoder: for a long search's final files
        # (megabytes) that would hold the chief's exit for seconds, so those stay compact
        compact = not final or len(view.trials) > INDENTED_UP_TO
        write_json(self.run.work, board, compact=compact, fsync=final)
        write_json(self.run.progress, snap, compact=not final, fsync=final)
        write_results(self.run, document, final=final, compact=compact)

    def _writer_loop(self) -> None:
        while not self._stop.is_set():
            if self.book.dirty.wait(0.5) or self._oracle_dirty.is_set() or self._trial_writes.pending():
                self.book.dirty.clear()
                started = time.monotonic()
                try:
                    self.write_state(final=False)
                except Exception:  # never let the writer kill the chief
                    log.exception("could not write progress")
                # coalesce bursts of updates; a long write (many trials) spaces the next ones
                # out so that the writer never takes more than about a tenth of the chief's time
                self._stop.wait(min(5.0, max(0.3, 9 * (time.monotonic() - started))))

    # --- main loop --------------------------------------------------------------------------
    def _lease_loop(self) -> None:
        period = min(1.0, self.leases.timeout / 4)
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
        threads = [threading.Thread(target=self._writer_loop, name="state-writer", daemon=True),
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


def _atomic_save_json(path, obj):
    """Keras Tuner's `save_json`, atomic: a killed chief leaves the old or the new file. No fsync:
    the oracle rewrites oracle.json and a trial.json several times per trial under its lock, and
    an fsync each time cost more than the rest of the chief's work together (see README,
    "Performance"); the OS flushes them within seconds."""
    import json

    text = json.dumps(obj)
    write_atomic(path, text, fsync=False)
    return text


def run_chief(spec: Experiment, run_dir: str | Path, bind: str, port: int,
              security: Optional[Security] = None) -> int:
    chief = Chief(spec, RunDir(run_dir), bind, port, security=security)
    chief.start()
    signal.signal(signal.SIGTERM, lambda *_: chief.terminate())
    return chief.serve_until_done()
