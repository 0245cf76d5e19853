"""The worker's Keras Tuner `Tuner`: runs trials handed out by the chief, many per process.

A subclass of `keras_tuner.Tuner`, so Keras Tuner's trials, hypermodel building and checkpoint
layout are used unchanged. What it changes:

- work comes from the chief's `NextWork` (see `cluster/chief/work_service.py`): one training at a time,
  an execution of a trial (the executions of one trial are spread over the workers) or a
  confirmation run; each training is seeded from (experiment seed, trial id, index) before the
  model is built, and returns its metrics at the best and at the last epoch, its weights file and
  whether its predictions collapsed to one class (`WorkDone`); a confirmation run is also
  evaluated on the validation and test splits;
- the search loop sleeps with back-off while the chief answers IDLE (stock Keras Tuner spins);
- it sends the search space to the chief at start (the chief does not import TensorFlow);
- each training keeps its best epoch's weights in memory and writes one weights file at the end
  (stock Keras Tuner writes a file at every improving epoch), only if it can still rank among the
  best trials (`fit.checkpoints: top`, the chief's `save_above`); the chief makes the best
  execution's file the trial's checkpoint;
- the degenerate-prediction check skips its forward pass when Keras' validation accuracy already
  proves the predictions are not all one class (`collapsed_predictions`);
- Keras state is cleared before every build, so memory does not grow across trials;
- Hyperband's epochs and parent checkpoints work as in `keras_tuner.Hyperband`;
- progress (trial, epoch, metrics) goes to the chief through heartbeats, every epoch's metrics
  among them (`record_epoch`: the chief keeps each training's curve), and a failed training's
  error type, message and traceback go with its `WorkDone`;
- a training the chief stops early (median stopping: the heartbeat's answer names it under
  `stop`) ends at its next epoch boundary and reports the values it reached (`stopped_early`);
- a unit whose lease the chief took back (the heartbeat's answer names it, or the chief refuses
  its result) is abandoned at the next batch and the worker asks for a fresh one;
- with `fit.tensorboard`, each trial logs its epochs and hyperparameters for TensorBoard's HParams
  view under `<run>/tensorboard/` (`tensorboard_log`);
- `request_stop()` (SIGTERM) ends training at the next batch and raises `TrialInterrupted`, so the
  caller gives the trial back instead of reporting a half-trained score;
- a failure because the shared run folder broke is not FAILED (`storage_loss`): the trial goes back;
- every training checkpoints itself at its epoch ends and a training taken back continues from its
  checkpoint on the next worker (`resume`); the checkpoint goes once its result is delivered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import keras
import keras_tuner as kt
from keras_tuner.engine import trial as trial_module
from keras_tuner.engine.tuner import maybe_distribute

from tunecluster.cluster.worker import epoch_data, resume, storage_loss
from tunecluster.cluster.worker.callbacks import BestWeights, EpochBoundaryStop, ProgressReport, StopCheck
from tunecluster.cluster.worker.heartbeat import Backoff
from tunecluster.cluster.worker.interruptions import FatalUsage, LeaseLost, TrialInterrupted
from tunecluster.cluster.worker.prediction_checks import collapsed_predictions
from tunecluster.cluster.worker.tensorboard_log import trial_callback
from tunecluster.cluster.worker.training_notes import start_note
from tunecluster.tuning.results import active_values
from tunecluster.core.errors import UsageError
from tunecluster.kt_compat import internals
from tunecluster.kt_compat.hyperparameter_reads import reads_of
from tunecluster.kt_compat.tf_gradients import GradientRegistry

log = logging.getLogger("tunecluster.worker")


class ClusterTuner(kt.Tuner):
    """A Keras Tuner `Tuner` for one tunecluster worker (see the module docstring)."""

    def __init__(self, oracle, hypermodel, *, splits, fit, directory, project_name,
                 distribution_strategy=None, executions_per_trial=1, report=None,
                 idle_backoff_max: float = 1.0, control: Optional[Callable[..., dict]] = None,
                 score_mode: str = "best_epoch", confirm_dir: Optional[str] = None,
                 record_epoch: Optional[Callable[[str, int, dict], None]] = None, curves_needed: bool = False,
                 top_rung: Optional[int] = None):
        self.splits = splits
        self._control = control
        self.score_mode = score_mode
        self.confirm_dir = Path(confirm_dir) if confirm_dir else Path(directory).parent / "confirm"
        self._seed: Optional[int] = None
        self._confirming = False
        self._space_size = 0
        self.fit_spec = fit
        self._report = report or (lambda **_: None)
        self._record_epoch = record_epoch
        self.curves_needed = curves_needed  # the chief stops trainings early: it needs every epoch
        self._stop_early: set[str] = set()  # units the chief stopped early (stop at the next epoch end)
        self.top_rung = top_rung  # ASHA's max_epochs: trainings below it keep their rung checkpoint
        self._set_space = None
        self._idle_backoff_max = idle_backoff_max
        self.trials_run = 0
        self.trials_lost = 0
        self._hypermodel_s = 0.0
        self.last_read: Optional[list[str]] = None  # the names the last build read from its hp
        self.stop_requested = threading.Event()
        self.current_trial: Optional[str] = None
        self._lost: set[str] = set()
        self._prepare_keras()
        super().__init__(
            oracle=oracle,
            hypermodel=hypermodel,
            directory=directory,
            project_name=project_name,
            overwrite=False,  # never: it deletes the shared project directory
            distribution_strategy=distribution_strategy,
            executions_per_trial=executions_per_trial,
        )

    def _prepare_keras(self) -> None:
        """Keras set-up for many trainings in one process: the gradient registry that would keep
        every finished trial's graphs alive (`kt_compat.tf_gradients`)."""
        self._gradients = GradientRegistry()

    def _log(self, message: str) -> None:
        """A worker's note about one of its trainings, in the role's log."""
        log.warning("%s: %s", self.tuner_id, message)

    # The worker keeps no state file of its own: the chief holds the search state.
    def save(self):
        return None

    def reload(self):
        return None

    def send_space(self, set_space: Optional[Callable[[dict], None]] = None) -> None:
        """Send the locally discovered search space to the chief (it cannot build models):
        as an ordered JSON config through `set_space` when given, else Keras Tuner's RPC."""
        local = getattr(self.oracle, "_oracle", self.oracle)
        self._set_space = set_space
        if set_space is not None:
            space = local.get_space()
            set_space(space.get_config())
            self._space_size = len(space.space)
        else:
            self.oracle.update_space(local.get_space())

    # --- leases and stopping ------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop at the next batch (or the next request) and leave the search loop."""
        self.stop_requested.set()

    def lease_answer(self, answer: dict) -> None:
        """Called with each heartbeat's answer: the chief may name a trial we no longer hold."""
        revoked = answer.get("revoked")
        if revoked and revoked == self.current_trial:
            self._lost.add(revoked)
        for key in answer.get("stop") or ():
            if key == self.current_trial:
                self._stop_early.add(key)

    def _must_stop(self) -> bool:
        return self.stop_requested.is_set() or (self.current_trial in self._lost)

    def _check_trial(self, trial_id: str) -> None:
        if self.stop_requested.is_set():
            raise TrialInterrupted(trial_id)
        if trial_id in self._lost:
            raise LeaseLost(trial_id)

    # --- the search loop -----------------------------------------------------------------
    def search(self, *fit_args, **fit_kwargs):
        """Run the chief's work units until it answers STOPPED (or SIGTERM)."""
        if self._control is None:
            raise RuntimeError("ClusterTuner needs the chief's control channel (control=...)")
        backoff = Backoff(maximum=self._idle_backoff_max)
        self.on_search_begin()
        answer = None  # the next unit, when the chief sent it with the last WorkDone's answer
        while not self.stop_requested.is_set():
            if answer is None:
                answer = self._control("NextWork", tuner_id=self.tuner_id)
            status = answer.get("status")
            if status == "STOPPED":
                break
            if status != "RUNNING":
                answer = None
                self._report(state="idle", trial=None, work=None)
                self.stop_requested.wait(backoff.next())
                continue
            backoff.reset()
            if self.stop_requested.is_set():  # SIGTERM while the request was on its way
                raise TrialInterrupted(answer["key"])
            answer = self._run_unit(answer)
        if answer is not None and answer.get("status") == "RUNNING":
            raise TrialInterrupted(answer["key"])  # handed out with the last result: give it back
        self._report(state="stopped", trial=None, work=None)
        self.on_search_end()

    def _run_unit(self, unit: dict) -> Optional[dict]:
        """Train `unit` and report it; returns the next unit when the chief sent it with its
        answer (one round trip per training instead of two), else None."""
        key, kind = unit["key"], unit["kind"]
        trial = trial_module.Trial.from_state(unit["trial"])
        self.current_trial = key
        self._lost.discard(key)
        self._report(state="running" if kind == "search" else "confirming", trial=trial.trial_id,
                     work=key, execution=unit["index"], epoch=0, metrics={})
        reply = None
        try:
            try:
                result = self._train_unit(trial, unit)
            except (TrialInterrupted, FatalUsage, LeaseLost, storage_loss.SharedStorageLost):
                raise
            except UsageError as exc:  # the user's code is wrong: every trial would fail the same way
                raise FatalUsage(exc, key) from exc
            except Exception as exc:
                self._check_trial(key)
                if lost := storage_loss.storage_lost(exc, Path(self.directory).parent):  # the worker exits
                    raise storage_loss.SharedStorageLost(key, lost) from exc
                self._log(f"{key} failed: {format_exception(exc)}")
                # what it registered before failing still joins the search (as Keras Tuner's
                # EndTrial carries it): a run_trial space is learned even when its first trial fails
                reply = self._work_done(trial, kind, key=key, ok=False, error_type=type(exc).__name__,
                                        message=str(exc).strip() or type(exc).__name__,
                                        traceback=traceback.format_exc(), values=dict(trial.hyperparameters.values))
            else:
                if key in self._lost:
                    raise LeaseLost(key)
                reply = self._work_done(trial, kind, key=key, ok=True, result=result,
                                        next=not self.stop_requested.is_set())
            if reply is not None and not reply.get("accepted", True):
                raise LeaseLost(reply.get("reason", key))
            if not getattr(self.fit_spec, "keep_checkpoints", True):  # delivered (or failed)
                resume.delivered(self._checkpoint_folder(key).parent, key, trial.hyperparameters.values, self.top_rung)
            self.trials_run += 1
            self._report(state="between trials", trial=None, work=None)
            return (reply or {}).get("next")
        except LeaseLost as exc:
            self.trials_lost += 1
            self._log(f"{key} was taken back by the chief ({exc}); asking for fresh work")
            self._report(state="lost trial", trial=None, work=None)
            return None
        finally:
            self._stop_early.discard(key)
            if not self.stop_requested.is_set():
                self.current_trial = None

    def _work_done(self, trial, kind: str, **request) -> dict:
        """Send WorkDone; hyperparameters first seen in this training (a conditional layer, a
        run_trial function's space) travel with it, and the chief adds them before it draws the
        next trial."""
        grew = kind == "search" and self._space_grew(trial.hyperparameters)
        if grew:
            request["space"] = trial.hyperparameters.get_config()
        reply = self._control("WorkDone", tuner_id=self.tuner_id, **request)
        if grew:
            self._space_size = len(trial.hyperparameters.space)
        return reply

    def _space_grew(self, hyperparameters) -> bool:
        return self._set_space is not None and len(hyperparameters.space) != self._space_size

    # --- one training ------------------------------------------------------------------------
    def _try_build(self, hp):
        # The previous training's model is gone; without this its graphs would stay alive
        # (tunecluster/tuning/graph_memory.py). Keras Tuner's clear_session + gc.collect follow.
        self._gradients.release()
        return super()._try_build(hp)

    def _build_hypermodel(self, hp):
        if self._seed is not None:  # after Keras Tuner's clear_session: weights, dropout, shuffling
            keras.utils.set_random_seed(self._seed)
        called = time.perf_counter()
        with reads_of(hp) as read:
            model = super()._build_hypermodel(hp)
        self.last_read = read  # the hyperparameters this model used (results show only those)
        self._hypermodel_s = time.perf_counter() - called  # the user's build alone (timing)
        parent = hp.values.get("tuner/trial_id")
        if parent and not self._confirming:  # Hyperband: continue from the parent trial's best weights
            with maybe_distribute(self.distribution_strategy):
                model.load_weights(self._get_checkpoint_fname(parent))
        return model

    def _checkpoint_folder(self, key: str) -> Path:
        return resume.unit_folder(Path(self.directory).parent / "checkpoints", key)

    def _callbacks(self, trial, unit: dict, epochs: int, best, boundary, note=None) -> list:
        fit, objective = self.fit_spec, self.oracle.objective
        key = unit["key"]
        record = (lambda epoch, metrics: self._record_epoch(key, epoch, metrics)) if self._record_epoch else None
        callbacks = [best, ProgressReport(self._report, trial.trial_id, unit["index"], epochs, record=record),
                     StopCheck(self._must_stop), boundary]
        if getattr(fit, "tensorboard", False) and unit["kind"] == "search":
            # <run>/tensorboard/<trial>[/execution_<k>]
            callbacks.append(trial_callback(Path(self.directory).parent / "tensorboard", trial,
                                            unit["index"], unit.get("count", 1),
                                            active_values(trial.hyperparameters.values, self.last_read),
                                            start_note=note, stopped_at=lambda: (
                                                boundary.stopped_at if (boundary.stopped_at or epochs) < epochs else None)))
        if fit.early_stopping_patience:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=objective.name, mode=objective.direction, patience=fit.early_stopping_patience))
        return callbacks

    def _train_unit(self, trial, unit: dict) -> dict:
        """Train one execution (or confirmation run) of `trial`; return what WorkDone carries."""
        started = time.time()
        hp = trial.hyperparameters
        fit, s = self.fit_spec, self.splits
        confirm = unit["kind"] == "confirm"
        epochs = int(hp.values.get("tuner/epochs", fit.epochs))
        initial_epoch = 0 if confirm else int(hp.values.get("tuner/initial_epoch", 0))
        objective = self.oracle.objective
        self._seed, self._confirming = int(unit["seed"]), confirm
        try:
            model, order_seed = self._try_build(hp), epoch_data.seed_after_build()  # (left to right)
        finally:
            self._confirming = False
        built = time.time()
        best = BestWeights(objective)
        boundary = EpochBoundaryStop(lambda: unit["key"] in self._stop_early)
        with maybe_distribute(self.distribution_strategy):
            resumed, promoted, checkpoint = resume.start(self, model, unit, hp.values, best, epochs, confirm)
        history = model.fit(  # epoch e's order depends on (seed, e) only: a resumed training trains the same
            **epoch_data.fit_inputs(s.x_train, s.y_train, fit.batch_size, order_seed, resumed or initial_epoch, epochs),
            validation_data=(s.x_val, s.y_val), validation_batch_size=fit.batch_size, verbose=fit.verbose,
            callbacks=self._callbacks(trial, unit, epochs, best, boundary, start_note(hp.values, resumed, promoted))
            + ([checkpoint] if checkpoint else []),
        )
        trained = time.time()
        self._check_trial(unit["key"])  # never report a score of an interrupted training
        history = resume.history_of(checkpoint, history)
        if not history.history:
            raise RuntimeError("training ran no epoch")
        best_metrics, best_epoch = internals.best_value_and_epoch(history, objective)
        last_epoch = len(next(iter(history.history.values()))) - 1
        last_metrics = {k: v[last_epoch] for k, v in history.history.items() if len(v) > last_epoch}
        restored = self.score_mode == "best_epoch" and best.weights is not None and not best.best_is_last
        if restored:
            model.set_weights(best.weights)  # (the last epoch was the best: nothing to restore)
        held_at = best.best_index if restored else last_epoch  # the epoch whose weights the model holds
        held = {k: v[held_at] for k, v in history.history.items() if held_at is not None and len(v) > held_at}
        degenerate, majority = collapsed_predictions(model, s.x_val, s.y_val, fit.batch_size, logs=held)
        result = {"values": dict(hp.values),  # with those the build registered (conditional layers)
                  "active": list(self.last_read or []),  # those it read
                  "best": _floats(best_metrics), "best_epoch": int(best_epoch),
                  "last": _floats(last_metrics), "last_epoch": int(last_epoch),
                  "degenerate": degenerate, "majority_rate": majority,
                  "curve": [_floats({k: v[i] for k, v in history.history.items() if len(v) > i})
                            for i in range(last_epoch + 1)]}
        if resumed is not None:  # the epochs its checkpoint (or the promoted trial's rung checkpoint) had trained
            result["promoted_from" if promoted else "resumed_from"] = resumed
        if boundary.stopped_at is not None and boundary.stopped_at < epochs:
            result["stopped_early"] = boundary.stopped_at  # the chief stopped it: the epochs it ran
        if confirm:
            folder = self.confirm_dir / f"trial_{trial.trial_id}"
            folder.mkdir(parents=True, exist_ok=True)
            weights = folder / f"run_{unit['index']}.weights.h5"
            result["validation"] = _evaluate(model, s.x_val, s.y_val, fit.batch_size)
            result["test"] = (_evaluate(model, s.x_test, s.y_test, fit.batch_size)
                              if s.x_test is not None else None)
        elif self._worth_saving(best_metrics if self.score_mode == "best_epoch" else last_metrics,
                                unit.get("save_above")):
            weights = Path(self.get_trial_dir(trial.trial_id)) / f"execution_{unit['index']}.weights.h5"
            # a plain write: Keras Tuner's save_json goes through tf.io.gfile (a few ms per call)
            Path(self._get_build_config_fname(trial.trial_id)).write_text(json.dumps(model.get_build_config()))
        else:  # `fit.checkpoints: top` and below the k-th best trial: its weights can never be used
            weights = None
        checked = time.time()
        if weights is not None:
            model.save_weights(str(weights))
        ended = time.time()
        result["weights"] = str(weights) if weights is not None else None
        result["duration_s"] = round(ended - started, 3)
        # where a training's time went: Keras' per-model costs around `fit` show up here
        result["timing"] = {"build_s": round(built - started, 4), "fit_s": round(trained - built, 4),
                            "check_s": round(checked - trained, 4), "save_s": round(ended - checked, 4),
                            "hypermodel_s": round(self._hypermodel_s, 4)}  # (part of build_s)
        return result

    def _worth_saving(self, metrics: dict, threshold: Optional[float]) -> bool:
        """Whether this training's score reaches the chief's `save_above` (None: always)."""
        objective = self.oracle.objective
        if threshold is None or not objective.has_value(metrics):
            return True
        score = objective.get_value(metrics)
        return score >= threshold if objective.direction == "max" else score <= threshold

    # --- export ---------------------------------------------------------------------------------
    def best_trial(self):
        trials = self.oracle.get_best_trials(1)
        if not trials or trials[0].status != trial_module.TrialStatus.COMPLETED:
            return None
        return trials[0]


def _floats(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items()}


def _evaluate(model, x, y, batch_size: int) -> dict:
    result = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return {k: float(v) for k, v in result.items()}


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


