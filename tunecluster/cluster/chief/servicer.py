"""Keras Tuner's `Oracle` RPCs on the chief: its own `OracleServicer`, with guarded oracle calls,
trial leases and tunecluster's bookkeeping.

What it adds to the stock servicer: the oracle's lock is released even when an oracle call raises
(`kt_compat.oracle_lock`); each running trial is leased to its worker (heartbeats renew it; an
expired lease puts the trial back in the queue, `requeue`) and an update or result from a worker
that no longer holds its trial is refused (FAILED_PRECONDITION); answers reuse each trial's
hyperparameters proto (`kt_compat.trial_protos`); reaching `max_consecutive_failed_trials` stops
the search with its reason instead of raising on every later call; and a plain Keras Tuner worker
that never sends the space gets one trial with the defaults after `space_wait` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

import grpc

from tunecluster.cluster.auth import caller_id
from tunecluster.cluster.chief.book import SearchBook
from tunecluster.cluster.leases import Leases
from tunecluster.kt_compat import internals, oracle_state
from tunecluster.kt_compat.oracle_lock import call_releasing_lock, oracle_lock
from tunecluster.kt_compat.trial_protos import TrialProtos

log = logging.getLogger("tunecluster.chief")


class ChiefServicer:
    """Keras Tuner's OracleServicer with guarded oracle calls, leases and tunecluster's bookkeeping."""

    def __init__(self, oracle, book: SearchBook, space_wait: float, leases: Leases):
        self._base = internals.oracle_servicer(oracle)
        self.oracle = oracle
        self.book = book
        self.leases = leases
        self.space_wait = space_wait
        self.stop_triggered = False
        self.changed = threading.Condition()
        self.work = None  # the WorkService of tunecluster workers (set by the Chief)
        self.pacing = None  # the HeartbeatPacing of tunecluster workers (set by the Chief)
        self.budget = None  # the TimeBudget of tuner.max_time (set by the Chief)
        self.protos = TrialProtos()

    # --- helpers -------------------------------------------------------------------------
    def oracle_lock(self):
        """Hold Keras Tuner's per-oracle lock (re-entrant for this thread, like `@synchronized`)."""
        return oracle_lock(self.oracle)

    def _guarded(self, context, func, *args, **kwargs):
        """Call an oracle method; whatever happens, never leave the oracle's lock held."""
        return call_releasing_lock(self.oracle, func, *args, **kwargs)

    def _space_known(self) -> bool:
        return len(self.oracle.hyperparameters.space) > 0

    def _status_trial(self, status: str):
        from keras_tuner.engine import trial as trial_module

        return trial_module.Trial(self.oracle.get_space(), trial_id="", status=status)

    def budget_stops(self, tuner_id: str) -> bool:
        """Whether `tuner_id` gets no new trial because `tuner.max_time` has passed (a trial it
        still holds, or one queued for another run after its worker was lost, is still handed out:
        trainings of trials that started go on)."""
        if self.budget is None or not self.budget.spent():
            return False
        if tuner_id in self.oracle.ongoing_trials or oracle_state.queued(self.oracle):
            return False
        if self.work is not None and self.budget.note() not in self.work.warnings:
            self.work.warn(self.budget.note())
        return True

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
            oracle_state.queued(self.oracle).append(trial_id)
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
        tuner_id = request.tuner_id
        caller = caller_id(context)
        if caller is not None and caller != tuner_id:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "tuner_id differs from the caller's id")
        trial = self.new_trial(tuner_id, timed_lease=caller is not None)
        return internals.protos().get_service().CreateTrialResponse(trial=self.protos.to_proto(trial))

    def new_trial(self, tuner_id: str, timed_lease: bool = True):
        """A trial for `tuner_id` (RUNNING, or a status trial: IDLE / STOPPED): the oracle's
        `create_trial`, the trial's lease and the chief's bookkeeping, in one place.

        The oracle lock is not held around `create_trial`: the oracle takes it itself, and
        tunecluster's Bayesian oracle (`tuning/bayesian_oracle.py`) leaves it while its model fits, so reads,
        updates, results and heartbeats of other workers never wait behind a suggestion.
        `timed_lease=False` is for plain Keras Tuner workers (no heartbeats: held untimed)."""
        from keras_tuner.engine import trial as trial_module

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
        if self.budget_stops(tuner_id):
            trial = self._status_trial(trial_module.TrialStatus.STOPPED)
            self.oracle.tuner_ids.discard(tuner_id)
        else:
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
        with self.oracle_lock():
            self._refuse_unless_held(context, request.trial_id, "update")
            trial = self._guarded(context, self.oracle.update_trial, request.trial_id, request.metrics,
                                  step=request.step)
            response = internals.protos().get_service().UpdateTrialResponse(trial=self.protos.to_proto(trial))
        self._notify()
        return response

    def EndTrial(self, request, context):
        from keras_tuner.engine import trial as trial_module

        trial_id = request.trial.trial_id
        with self.oracle_lock():
            self._refuse_unless_held(context, trial_id, "result")
            try:
                ended = self.protos.from_proto(request.trial, self.oracle.trials.get(trial_id))
                self._guarded(context, self.oracle.end_trial, ended)
            except RuntimeError as exc:
                if not oracle_state.is_failure_limit(exc):
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
                    oracle_state.save_trial(self.oracle, trial)
                self.oracle.save()
            if self.ongoing_holder(trial_id) is None:
                self.leases.release(trial_id)
        trial = self.oracle.trials.get(trial_id)
        status = trial.status if trial is not None else trial_module.TrialStatus.from_proto(request.trial.status)
        if status != trial_module.TrialStatus.RUNNING:
            self.protos.forget(trial_id)
        self.book.trial_ended(trial_id, status)
        self._notify()
        return internals.protos().get_service().EndTrialResponse()

    def GetTrial(self, request, context):
        with self.oracle_lock():
            trial = self._guarded(context, self.oracle.get_trial, request.trial_id)
            return internals.protos().get_service().GetTrialResponse(trial=self.protos.to_proto(trial))

    def GetBestTrials(self, request, context):
        # Under the lock: Keras Tuner's get_best_trials is not synchronized, and a trial being
        # ended has its status before its score (sorting it would raise).
        with self.oracle_lock():
            trials = self._guarded(context, self.oracle.get_best_trials, request.num_trials)
            return internals.protos().get_service().GetBestTrialsResponse(trials=[self.protos.to_proto(t) for t in trials])

    # --- search state ---------------------------------------------------------------------
    def search_complete(self) -> bool:
        if self.oracle.ongoing_trials or oracle_state.queued(self.oracle):
            return False
        if self.work is not None and self.work.busy():
            return False
        return self.stop_triggered or bool(self.book.search_failed)


