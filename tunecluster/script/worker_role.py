"""A worker role of a Keras Tuner script: Keras Tuner's own client and search loop, with what a
tunecluster worker adds, and nothing in the script changed.

`WorkerGuard.search` runs the script's `tuner.search(...)` with:
- the oracle token, TLS and the worker's id on every call, each call retried while the chief is
  away and given up after `cluster.chief_timeout` (Keras Tuner's client waits an hour per call);
- heartbeats (trial, epoch, metrics) that hold the trial's lease, and a stop at the next batch
  when the chief took the trial back (its late result would be refused anyway);
- a back-off between IDLE answers (Keras Tuner spins);
- failed trials' error messages sent to the chief (the Trial proto has no message field);
- SIGTERM: stop at the next batch, give the trial back, exit 143;
- a training that failed because the shared run folder is unreachable (`storage_loss`) is not
  recorded as a failed trial: the trial goes back to the chief and the worker exits 74, to be
  restarted (as a tunecluster worker does);
- after the search, the script's `get_best_models()` / `get_best_hyperparameters()` read the
  finished search from the run folder (the chief may have exited by then).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from tunecluster.cluster.auth import open_channel, read_security
from tunecluster.cluster.control import ControlClient
from tunecluster.cluster.worker.chief_link import ChiefLink, ResilientStub, ResultRefused
from tunecluster.cluster.worker.heartbeat import Backoff, Heartbeat
from tunecluster.cluster.worker.interruptions import LeaseLost, TrialInterrupted
from tunecluster.cluster.worker.storage_loss import EXIT_STORAGE_LOST, SharedStorageLost, storage_lost
from tunecluster.core.env import RoleEnv
from tunecluster.core.rundir import RunDir
from tunecluster.core.rundir import read_json
from tunecluster.kt_compat import internals, script_hooks
from tunecluster.script.exits import RoleExit
from tunecluster.tuning.spec import Experiment

log = logging.getLogger("tunecluster.script")
FINISH_WAIT_S = 120.0  # how long a worker waits for the chief to record the search's end


def _trial_guard(guard: "WorkerGuard"):
    """A Keras callback: epochs to the heartbeat; the lease or SIGTERM checked at every batch."""
    import keras

    class TrialGuard(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: round(float(v), 5) for k, v in (logs or {}).items()}
            guard.heartbeat.report(trial=guard.trial, epoch=epoch + 1, metrics=metrics)

        def on_train_batch_end(self, batch, logs=None):
            guard.check()

        on_test_batch_end = on_train_batch_end

    return TrialGuard()


class WorkerGuard:
    """One worker's hardening of Keras Tuner's client (see the module docstring)."""

    def __init__(self, tuner, spec: Experiment, run: RunDir, role: RoleEnv):
        self.tuner, self.spec, self.run, self.role = tuner, spec, run, role
        self.trial = None  # the trial being run
        self.lost: set[str] = set()
        self.stop_requested = threading.Event()
        channel = open_channel(role.address, read_security(), tuner_id=role.tuner_id)
        self.link = ChiefLink(role.address, spec.cluster.chief_timeout)
        self.control = ControlClient(channel, link=self.link)
        self.once = ControlClient(channel)  # one attempt, no retries: the give-back on SIGTERM
        beats = ControlClient(channel, link=ChiefLink(role.address, spec.cluster.chief_timeout, quiet=True))
        self.heartbeat = Heartbeat(lambda msg: beats.call(msg.pop("method"), **msg), role.tuner_id,
                                   interval=spec.cluster.heartbeat_interval)
        self.heartbeat.on_answer = self._lease_answer
        self.heartbeat.report(pid=os.getpid(), host=os.uname().nodename)
        script_hooks.set_client_stub(tuner, ResilientStub(internals.protos().get_service_grpc().OracleStub(channel),
                                                          self.link))
        self._wrap_client(tuner.oracle)
        script_hooks.wrap_trial_run(tuner, self._storage_checked)

    # --- the client's calls ------------------------------------------------------------------
    def _wrap_client(self, client) -> None:
        create, update, end = client.create_trial, client.update_trial, client.end_trial
        backoff = Backoff(first=0.05, maximum=self.spec.cluster.idle_backoff_max)

        def create_trial(tuner_id):
            while True:
                if self.stop_requested.is_set():
                    raise TrialInterrupted(None)
                trial = create(tuner_id)
                if trial.status != "IDLE":
                    backoff.reset()
                    self.trial = trial.trial_id if trial.status == "RUNNING" else None
                    self.lost.discard(self.trial)  # a trial taken back may come back to us: ours again
                    self.heartbeat.report(trial=self.trial, epoch=None, metrics=None,
                                          state="running" if self.trial else "stopped")
                    return trial
                self.heartbeat.report(trial=None, state="idle")
                if self.stop_requested.wait(backoff.next()):
                    raise TrialInterrupted(None)

        def update_trial(trial_id, metrics, step=0):
            try:
                return update(trial_id, metrics, step=step)
            except ResultRefused as refused:
                self.lost.add(trial_id)
                raise LeaseLost(trial_id) from refused

        def end_trial(trial):
            self.check_before_end(trial.trial_id)
            if trial.status in ("FAILED", "INVALID") and getattr(trial, "message", None):
                lines = [line for line in str(trial.message).strip().splitlines() if line.strip()]
                last = lines[-1] if lines else ""
                error_type, _, message = last.partition(": ")
                try:
                    self.control.call("TrialNote", tuner_id=self.role.tuner_id, trial_id=trial.trial_id,
                                      error_type=error_type or "Error", message=message or last)
                except Exception as exc:  # the note is a courtesy; the result matters
                    log.warning("could not send trial %s's error to the chief: %s", trial.trial_id, exc)
            try:
                end(trial)
            except ResultRefused as refused:
                log.warning("%s: the chief refused trial %s's result: %s", self.role.tuner_id, trial.trial_id, refused)
            self.trial = None
            self.heartbeat.report(trial=None, epoch=None, metrics=None, state="idle")

        client.create_trial, client.update_trial, client.end_trial = create_trial, update_trial, end_trial

    def _storage_checked(self, run_trial):
        """`run_trial` with a failure of the shared run folder raised past Keras Tuner's recording."""

        def run(trial, *args, **kwargs):
            try:
                return run_trial(trial, *args, **kwargs)
            except Exception as exc:
                if lost := storage_lost(exc, self.run.root):
                    raise SharedStorageLost(trial.trial_id, lost) from exc
                raise

        return run

    def _lease_answer(self, answer: dict) -> None:
        revoked = answer.get("revoked")
        if revoked and revoked == self.trial:
            self.lost.add(revoked)

    def check(self) -> None:
        """Raise (through Keras and Keras Tuner) when the worker must stop or lost its trial."""
        if self.stop_requested.is_set():
            raise TrialInterrupted(self.trial)
        if self.trial is not None and self.trial in self.lost:
            raise LeaseLost(self.trial)

    def check_before_end(self, trial_id: str) -> None:
        if self.stop_requested.is_set():
            raise TrialInterrupted(trial_id)  # a trial cut short is given back, not reported

    # --- the search ------------------------------------------------------------------------------
    def search(self, original, fit_args: tuple, fit_kwargs: dict) -> None:
        fit_kwargs = dict(fit_kwargs)
        fit_kwargs["callbacks"] = [*(fit_kwargs.get("callbacks") or []), _trial_guard(self)]

        def on_sigterm(*_):
            log.warning("%s: SIGTERM: stopping at the next batch and giving the trial back", self.role.tuner_id)
            self.stop_requested.set()

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        self.heartbeat.start()
        try:
            while True:
                try:
                    original(self.tuner, *fit_args, **fit_kwargs)
                    break
                except LeaseLost as lost:
                    log.warning("%s: trial %s was taken back by the chief (lease lost); asking for the next",
                                self.role.tuner_id, lost)
                    self.trial = None
        except TrialInterrupted as stop:
            self._give_back(stop.trial_id or self.trial)
            raise
        except SharedStorageLost as lost:
            self._storage_lost(lost.key, lost.reason)
        except Exception as exc:  # outside a training (Keras Tuner writing its files, say)
            if reason := storage_lost(exc, self.run.root):
                self._storage_lost(self.trial, reason)
            raise
        finally:
            self.heartbeat.report(trial=None, state="stopped")
            self.heartbeat.stop()
            signal.signal(signal.SIGTERM, previous)
        self._read_results_from_run_folder()

    def _storage_lost(self, trial_id, reason: str) -> None:
        log.error("%s: the shared run folder is unreachable (%s); giving the trial back and exiting so that "
                  "this worker is restarted", self.role.tuner_id, reason)
        self._give_back(trial_id, reason="shared folder unreachable")
        raise RoleExit(EXIT_STORAGE_LOST, f"the shared run folder is unreachable ({reason})")

    def _give_back(self, trial_id, reason: str = "SIGTERM") -> None:
        if trial_id:
            try:
                # once, briefly: a chief stopped at the same time (Ctrl-C on `up`) holds the trial
                # for this worker when it resumes, and the lease covers a chief that keeps running
                self.once.call("Release", tuner_id=self.role.tuner_id, trial_id=trial_id, reason=reason, timeout=2)
                log.warning("%s: gave trial %s back to the chief", self.role.tuner_id, trial_id)
            except Exception as exc:  # the lease expires on its own
                reason = exc.code().name if hasattr(exc, "code") else type(exc).__name__
                log.warning("%s: could not give trial %s back (%s); its lease will expire",
                            self.role.tuner_id, trial_id, reason)

    def _read_results_from_run_folder(self) -> None:
        """After the search: wait (bounded) for the chief to record its end, then let the script's
        `get_best_*` calls read the finished search from the run folder."""
        deadline = time.monotonic() + FINISH_WAIT_S
        while not self.run.finished() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not self.run.finished():
            log.warning("%s: the chief did not record the search's end within %.0f s; the best trials "
                        "are read from what the run folder holds now", self.role.tuner_id, FINISH_WAIT_S)
        failed = (read_json(self.run.progress) or {}).get("search_failed")
        if failed:
            raise RoleExit(1, f"the search ended early: {failed}")
        oracle = script_hooks.local_oracle(self.tuner)
        script_hooks.reload_oracle_from(oracle, str(self.run.kt_dir), self.spec.name)
        self.tuner.oracle = oracle
