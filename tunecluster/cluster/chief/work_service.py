"""The chief's work protocol for tunecluster workers: `NextWork` and `WorkDone` (control RPCs).

`NextWork` hands a worker the next training: a pending execution of a running trial first, else a
new trial from the oracle (its executions then go to whichever workers ask next), and after the
search the confirmation stage's retrainings of the top configurations. Every unit is leased to its
worker like a trial (heartbeats renew it; a lost worker's unit goes back to the front of the queue,
and its late result is refused).

`WorkDone` records a training's result. When the last execution of a trial is in, the trial's
metrics (the executions' mean, at the best or the last epoch as `tuner.score` says) go to the
oracle and the trial ends; the best execution's weights become the trial's checkpoint (Hyperband's
next rounds and the export load it). A failed execution fails its trial (Keras Tuner's retries and
consecutive-failure stop apply). Plain Keras Tuner workers keep using the oracle RPCs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Optional

from tunecluster.cluster.chief.early_stop import MedianStopper, stopped_epoch
from tunecluster.cluster.chief.save_threshold import SaveThreshold
from tunecluster.cluster.work import CONFIRM, DONE, FAILED, RUNNING, SEARCH, Board
from tunecluster.kt_compat import oracle_state
from tunecluster.tuning import scoring
from tunecluster.tuning.results import active_names
from tunecluster.tuning.search_warnings import OVERLAP_NOTE, degenerate_note, start_warnings

log = logging.getLogger("tunecluster.chief")

ONGOING_PREFIX = "exec:"  # the oracle's ongoing_trials key of a trial whose executions are spread


class WorkService:
    def __init__(self, servicer, spec, board: Board, confirm: bool = True):
        self.s = servicer
        self.spec = spec
        self.board = board
        self.confirm_enabled = confirm and spec.confirm.enabled
        self.search_exhausted = False
        self.warnings: list[str] = []
        self._warned_space = False
        self._lock = threading.RLock()
        self._unknown_space = threading.Lock()  # one trial with the defaults while nothing declared the space
        self._threshold: Optional[SaveThreshold] = None  # `save_above`
        self.stopper = MedianStopper(spec, board) if spec.tuner.early_stopping is not None else None

    # --- helpers --------------------------------------------------------------------------------
    @property
    def oracle(self):
        return self.s.oracle

    def owns(self, key: str) -> bool:
        return key in self.board.units

    def _trial_dir(self, trial_id: str) -> Path:
        return Path(oracle_state.project_dir(self.oracle)) / f"trial_{trial_id}"

    def note_space(self) -> None:
        """Once the search space is known: the start warnings (logged once, kept for the report)."""
        if self._warned_space or not len(self.oracle.hyperparameters.space):
            return
        self._warned_space = True
        for text in start_warnings(self.spec, self.oracle.hyperparameters.space):
            self.warn(text)

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning("%s", text)
            self.s.book.touch()

    def busy(self) -> bool:
        """Work left that keeps the search from being complete."""
        if self.board.running() or self.board.has_pending():
            return True
        return self._confirmation_due()

    def _confirmation_due(self) -> bool:
        if not self.confirm_enabled or self.board.confirm_started or self.s.book.search_failed:
            return False
        if not self.s.book.tunecluster_workers:
            return False  # plain Keras Tuner workers cannot run it
        return self.search_exhausted and any(t.status == "COMPLETED" for t in list(self.oracle.trials.values()))

    # --- NextWork ---------------------------------------------------------------------------------
    def next_work(self, request: dict) -> dict:
        tuner_id = str(request.get("tuner_id"))
        book = self.s.book
        with book.lock:
            book.tunecluster_workers.add(tuner_id)
            if book.first_request_at is None:
                book.first_request_at = time.time()
        if book.search_failed:
            return self._stop(tuner_id)
        with self._lock:
            # A worker asks only when it runs nothing: whatever it still holds (it was restarted) goes back.
            for unit in self.board.running_for(tuner_id):
                self.s.leases.release(unit.key)
                self.board.give_back(unit.key)
            unit = self.board.take(tuner_id)
            need_trial = unit is None and (not self.search_exhausted or bool(oracle_state.queued(self.oracle)))
        if need_trial:
            if len(self.oracle.hyperparameters.space):
                unit, answer = self._new_trial_unit(tuner_id)
            else:
                # Nothing has declared the space (a run_trial function registers its
                # hyperparameters as it runs): one trial with the defaults teaches it, as in
                # Keras Tuner, and the other workers wait for it. If its end leaves the space
                # empty, the oracle's next answer is STOPPED: there is nothing to search.
                with self._unknown_space:
                    if len(self.oracle.hyperparameters.space) or not (
                            self.board.running(SEARCH) or self.board.has_pending(SEARCH)):
                        unit, answer = self._new_trial_unit(tuner_id)
                    else:
                        unit, answer = None, {"status": "IDLE"}
            if answer is not None:
                return answer
        with self._lock:
            if unit is None:
                unit = self.board.take(tuner_id)
            if unit is None and self.search_exhausted:
                if self.board.running(SEARCH) or self.oracle.ongoing_trials:
                    return {"status": "IDLE"}
                if self._confirmation_due():
                    self._start_confirmation()
                    unit = self.board.take(tuner_id)
                if unit is None:
                    if self.board.running() or self.board.has_pending():
                        return {"status": "IDLE"}
                    return self._stop(tuner_id)
            if unit is None:
                return {"status": "IDLE"}
            self.s.leases.grant(unit.key, tuner_id, timed=True)
        self.s._notify()
        trial = self.oracle.trials[unit.trial_id]
        return {"status": "RUNNING", "key": unit.key, "kind": unit.kind, "index": unit.index,
                "seed": unit.seed, "count": self.board.executions if unit.kind == SEARCH else self.spec.confirm.repeats,
                "trial": trial.get_state(), "save_above": self.save_above(unit)}

    def save_above(self, unit) -> Optional[float]:
        """The score a search training must reach for its weights to be written (`save_threshold.py`)."""
        if unit.kind != SEARCH:
            return None
        self._threshold = self._threshold or SaveThreshold(self.spec, self.oracle, self.s.oracle_lock)
        return self._threshold.score()

    def _new_trial_unit(self, tuner_id: str):
        """A new trial from the oracle and its first unit, for `tuner_id`: (unit, None); (None,
        None) when the oracle says STOPPED; (None, IDLE answer) when it has nothing yet."""
        from keras_tuner.engine import trial as trial_module

        if self.s.budget_stops(tuner_id):  # STOPPED: tuner.max_time passed
            trial = self.s._status_trial(trial_module.TrialStatus.STOPPED)
        else:
            # a Bayesian suggestion waits for its model outside the oracle lock (bayesian_oracle.py);
            # other oracles create and file the trial in one hold of the lock
            outside = getattr(self.oracle, "suggests_outside_lock", False)
            with contextlib.nullcontext() if outside else self.s.oracle_lock():
                trial = self.s._guarded(None, self.oracle.create_trial, tuner_id)
                if trial.status == trial_module.TrialStatus.RUNNING:
                    with self.s.oracle_lock():  # (re-entrant: held already unless `outside`)
                        self._file_running(trial, tuner_id)
        if trial.status == trial_module.TrialStatus.RUNNING:
            with self._lock:
                self.board.add_trial(trial.trial_id)
                unit = self.board.take(tuner_id, key=f"{trial.trial_id}#0")
            self.s.book.trial_started(trial.trial_id, tuner_id)
            return unit, None
        if trial.status == trial_module.TrialStatus.STOPPED:
            self.search_exhausted = True
            self.oracle.tuner_ids.add(tuner_id)  # told when everything is done
            return None, None
        return None, {"status": "IDLE"}

    def _file_running(self, trial, tuner_id: str) -> None:
        """(oracle lock held) The running trial under its own key (a worker may hold several units)."""
        held = self.oracle.ongoing_trials.get(tuner_id)
        if held is not None and held.trial_id == trial.trial_id:
            self.oracle.ongoing_trials.pop(tuner_id)
        self.oracle.ongoing_trials[ONGOING_PREFIX + trial.trial_id] = trial
        self.oracle.save()

    def _stop(self, tuner_id: str) -> dict:
        self.s.stop_triggered = True
        self.oracle.tuner_ids.discard(tuner_id)
        with self.s.book.lock:
            self.s.book.workers.setdefault(tuner_id, {}).update(state="stopped", trial=None)
        self.s._notify()
        return {"status": "STOPPED"}

    def _start_confirmation(self) -> None:
        completed = [t for t in list(self.oracle.trials.values()) if t.status == "COMPLETED" and t.score is not None]
        reverse = self.spec.tuner.direction == "max"
        top = sorted(completed, key=lambda t: t.score, reverse=reverse)[: self.spec.confirm.top]
        ids = [t.trial_id for t in top]
        self.board.add_confirmation(ids, self.spec.confirm.repeats)
        log.info("confirmation: retraining trials %s %d times each with fresh seeds",
                 ", ".join(ids), self.spec.confirm.repeats)
        self.s.book.touch()

    # --- epochs (heartbeats) ----------------------------------------------------------------------
    def record_epochs(self, tuner_id: str, rows: list) -> list[str]:
        """A heartbeat's epoch reports go into the units' curves (and, with median stopping, are
        judged); returns the worker's running units it must stop early."""
        for row in rows:
            unit = self.board.record_epoch(str(row.get("work")), tuner_id, int(row.get("epoch") or 0),
                                           row.get("metrics") or {})
            if unit is not None and self.stopper is not None:
                self.stopper.judge(unit)
        return [u.key for u in self.board.running_for(tuner_id) if u.stop_at is not None]

    # --- WorkDone -----------------------------------------------------------------------------------
    def work_done(self, request: dict) -> dict:
        tuner_id, key = str(request.get("tuner_id")), str(request.get("key"))
        with self._lock:
            unit = self.board.units.get(key)
            holder = self.s.leases.holder(key)
            if unit is None or unit.state != RUNNING or holder != tuner_id:
                reason = (f"{key} is now held by {holder}" if holder else
                          f"{key} is not running any more (its lease expired or its trial ended)")
                with self.s.book.lock:
                    self.s.book.refused_results += 1
                log.warning("refused the result of %s from %s: %s", key, tuner_id, reason)
                return {"accepted": False, "reason": reason}
            self.s.leases.release(key)
            if request.get("ok"):
                self.board.finish(key, request.get("result") or {})
            else:
                self.board.fail(key, f"{request.get('error_type')}: {request.get('message')}")
        if unit.kind == SEARCH:
            if not request.get("ok"):
                self._fail_trial(unit.trial_id, tuner_id, request)
            elif self.board.trial_done(unit.trial_id):
                self._complete_trial(unit.trial_id)
        elif not request.get("ok"):
            log.warning("confirmation run %s failed on %s: %s: %s", key, tuner_id,
                        request.get("error_type"), request.get("message"))
        if unit.kind == CONFIRM and self.board.confirmation_done():
            self._after_confirmation()
        self.s.book.touch()
        self.s._notify()
        return {"accepted": True}

    def _complete_trial(self, trial_id: str) -> None:
        units = self.board.of_trial(trial_id)
        spec = self.spec.tuner
        summary = scoring.aggregate_executions([u.result for u in units], spec.objective, spec.score,
                                               spec.direction)
        self._keep_best_weights(trial_id, units, summary["best_execution"])
        with self.s.oracle_lock():
            trial = self.oracle.trials[trial_id]
            # hyperparameters the hypermodel registered while building (e.g. a second layer's units)
            # join the trial's values, as Keras Tuner's EndTrial would carry them
            for name, value in ((units[0].result or {}).get("values") or {}).items():
                trial.hyperparameters.values.setdefault(name, value)
            self.s._guarded(None, self.oracle.update_trial, trial_id, summary["metrics"], step=summary["step"])
            trial.status = "COMPLETED"
            ended = time.time()
            stopped = stopped_epoch(units)
            if stopped is not None:  # COMPLETED for the oracle: a Bayesian search learns from its value
                trial.message = f"stopped early after epoch {stopped} (median stopping)"
            self._end_trial(trial)
            if self._threshold is not None:
                self._threshold.refresh()  # while the lock is held anyway
        if self.stopper is not None:
            self.stopper.trial_completed(trial_id, units)
        self.s.book.trial_ended(trial_id, "COMPLETED", stopped_early=stopped, at=ended)

    def _keep_best_weights(self, trial_id: str, units, best: Optional[int]) -> None:
        """The best execution's weights become the trial's checkpoint; the others are removed."""
        for unit in units:
            path = (unit.result or {}).get("weights")
            if not path or not os.path.exists(path):
                continue
            if unit.index == best:
                os.replace(path, self._trial_dir(trial_id) / "checkpoint.weights.h5")
            else:
                try:
                    os.remove(path)
                except OSError:
                    pass

    def _fail_trial(self, trial_id: str, tuner_id: str, request: dict) -> None:
        for other in self.board.drop_trial(trial_id):
            self.s.leases.release(other.key)  # its worker hears "revoked" and stops at the next batch
        self.s.book.note({"trial_id": trial_id, "tuner_id": tuner_id, "error_type": request.get("error_type"),
                          "message": request.get("message")})
        with self.s.oracle_lock():
            trial = self.oracle.trials[trial_id]
            for name, value in (request.get("values") or {}).items():  # registered before it failed
                trial.hyperparameters.values.setdefault(name, value)
            trial.status = "FAILED"
            ended = time.time()
            trial.message = request.get("traceback") or request.get("message")
            self._end_trial(trial)
        status = self.oracle.trials[trial_id].status
        self.s.book.trial_ended(trial_id, status, at=ended)

    def _end_trial(self, trial) -> None:
        """oracle.end_trial (lock held); a consecutive-failures stop ends the search cleanly."""
        try:
            self.s._guarded(None, self.oracle.end_trial, trial)
        except RuntimeError as exc:
            if not oracle_state.is_failure_limit(exc):
                raise
            reason = str(exc).splitlines()[0]
            with self.s.book.lock:
                self.s.book.search_failed = reason
            log.error("stopping the search: %s", reason)
            for key, ongoing in list(self.oracle.ongoing_trials.items()):
                if ongoing.trial_id == trial.trial_id:
                    self.oracle.ongoing_trials.pop(key)
            oracle_state.save_trial(self.oracle, trial)
            self.oracle.save()

    def _after_confirmation(self) -> None:
        ranked = self.confirmed_ranking()
        if ranked and scoring.intervals_overlap(ranked[: self.spec.confirm.top]):
            self.warn(OVERLAP_NOTE)
        note = degenerate_note(self.degenerate_trials())
        if note:
            self.warn(note)

    # --- giving back, questions ---------------------------------------------------------------------
    def give_back(self, key: str, tuner_id: str, reason: str) -> bool:
        with self._lock:
            unit = self.board.units.get(key)
            self.s.leases.release(key)
            if unit is None or unit.worker != tuner_id or unit.state != RUNNING:
                return False
            self.board.give_back(key)
        log.warning("%s taken back from %s and queued again: %s", key, tuner_id, reason)
        self.s.book.trial_requeued(unit.trial_id, tuner_id, reason)
        self.s._notify()
        return True

    def degenerate_trials(self) -> list[str]:
        found = []
        for trial_id in list(self.oracle.trials):  # a copy: trials are added meanwhile
            units = self.board.of_trial(trial_id)
            flags = [(u.result or {}).get("degenerate") for u in units if u.state == DONE]
            if flags and all(flags):
                found.append(trial_id)
        return sorted(found, key=lambda t: (len(t), t))

    def confirmed_ranking(self) -> list[dict]:
        with self.board.lock:
            units = list(self.board.units.values())
            runs: dict[str, list[dict]] = {t: [] for t in self.board.confirm_trials}
        for unit in units:
            if unit.kind == CONFIRM and unit.state in (DONE, FAILED):
                runs.setdefault(unit.trial_id, []).append(
                    {"index": unit.index, "seed": unit.seed, "worker": unit.worker, "result": unit.result})
        spec = self.spec.tuner
        return scoring.rank_confirmed(runs, spec.objective, spec.score, spec.direction)

    def active_names(self, trial_id: str) -> Optional[list]:
        """The hyperparameters the trial's trainings read (None: not known)."""
        return active_names(self.board.of_trial(trial_id))

    def export_choice(self) -> dict:
        """What the exporting worker saves: the best confirmed configuration's best run, else the
        search's best trial (its checkpoint)."""
        model_free = bool(self.spec.run_trial)  # run_trial trainings write no weights
        ranked = [r for r in self.confirmed_ranking()
                  if r["best_run"] and (model_free or r["best_run"].get("weights"))]
        if ranked:
            top = ranked[0]
            trial = self.oracle.trials[top["trial_id"]]
            return {"trial_id": top["trial_id"], "weights": top["best_run"]["weights"],
                    "active": self.active_names(top["trial_id"]),
                    "validation": top["best_run"].get("validation"), "test": top["best_run"].get("test"),
                    "trial": trial.get_state(),
                    "confirmed": {k: top[k] for k in ("mean", "std", "runs", "scores", "test_mean", "test_std")}
                    | {"run": top["best_run"]["index"], "seed": top["best_run"]["seed"]}}
        with self.s.oracle_lock():
            best = self.oracle.get_best_trials(1)
        searched = best[0].trial_id if best and best[0].status == "COMPLETED" else None
        return {"trial_id": None, "weights": None, "trial": None, "confirmed": None,
                "active": self.active_names(searched) if searched else None}

    def stage(self) -> str:
        if self.board.confirm_started:
            return "done" if self.board.confirmation_done() else "confirmation"
        return "search"

    def summary(self) -> dict:
        """For progress.json."""
        with self.board.lock:
            units = list(self.board.units.values())
        confirm = [u for u in units if u.kind == CONFIRM]
        return {"stage": self.stage(), "executions_per_trial": self.board.executions,
                "pending": len(self.board.order), "running": sum(u.state == RUNNING for u in units),
                "confirm_done": sum(u.state in (DONE, FAILED) for u in confirm), "confirm_total": len(confirm)}
