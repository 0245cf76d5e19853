"""The worker's Keras Tuner `Tuner`: runs trials handed out by the chief, many per process.

A subclass of `keras_tuner.Tuner`, so Keras Tuner's trials, hypermodel building and checkpoint
layout are used unchanged. What it changes:

- work comes from the chief's `NextWork` (see `cluster/work_service.py`): one training at a time,
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
- progress (trial, epoch, metrics) goes to the chief through heartbeats, and a failed training's
  error type, message and traceback go with its `WorkDone`;
- a unit whose lease the chief took back (the heartbeat's answer names it, or the chief refuses
  its result) is abandoned at the next batch and the worker asks for a fresh one;
- with `fit.tensorboard`, each trial logs its epochs and hyperparameters for TensorBoard's HParams
  view under `<run>/tensorboard/` (`tensorboard_log`);
- `request_stop()` (SIGTERM) ends training at the next batch and raises `TrialInterrupted`, so the
  caller gives the trial back instead of reporting a half-trained score.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine import tuner_utils
from keras_tuner.src.engine.tuner import maybe_distribute

from tunecluster.core.errors import UsageError
from tunecluster.kt_compat import hyperparameters as fast_hp
from tunecluster.kt_compat.tf_gradients import GradientRegistry
from tunecluster.cluster.worker.tensorboard_log import trial_callback


def _memoize_keras_saving_skipsets() -> None:
    """Keras' weight saving walks the model's attributes, skipping those of reference objects
    (a fresh Layer, Optimizer, Metric, ... built and listed with dir()). Keras 3 means to cache
    these sets in its global state but stores them under another key than it reads (and
    `clear_session`, run before every build, would drop them anyway), so every `save_weights`
    and `load_weights` rebuilt them: ~20-30 ms per training here. They depend only on Keras'
    classes, so one set per object type for the whole process gives the same walk."""
    from keras.src.saving import saving_lib

    original = saving_lib.get_attr_skipset
    if not getattr(original, "_tunecluster_memo", False):
        memo = functools.lru_cache(maxsize=None)(original)
        memo._tunecluster_memo = True
        saving_lib.get_attr_skipset = memo


class LeaseLost(BaseException):
    """The chief took this trial back (lease expired); its result would be refused."""


class FatalUsage(BaseException):
    """A usage error inside a trial (e.g. the hypermodel returned no model): stop the worker
    (Keras Tuner would record it as a failed trial and try the next). `key`: the unit it held."""

    def __init__(self, error: UsageError, key: Optional[str] = None):
        super().__init__(str(error))
        self.error = error
        self.key = key


class TrialInterrupted(BaseException):
    """The worker was asked to stop (SIGTERM) in the middle of a trial."""

    def __init__(self, trial_id: Optional[str]):
        super().__init__(trial_id)
        self.trial_id = trial_id


class Backoff:
    """Exponential back-off between IDLE answers: 50 ms doubling up to `maximum` seconds."""

    def __init__(self, first: float = 0.05, maximum: float = 1.0):
        self.first, self.maximum = first, maximum
        self.current = first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.first


class _BestWeights(keras.callbacks.Callback):
    """Remembers the weights of the best epoch (by the objective).

    The copy is taken lazily, at the start of the epoch after an improvement (the weights are
    still those of the improving epoch then): when the best epoch is the last one, as in a
    one-epoch fit or a loss that keeps falling, no copy is made at all (`best_is_last`)."""

    def __init__(self, objective):
        super().__init__()
        self.objective = objective
        self.best_value: Optional[float] = None
        self.weights = None
        self.best_is_last = False  # the model already holds the best epoch's weights
        self.best_index: Optional[int] = None  # the best epoch's position in the history
        self._epochs_seen = 0
        self._copy_due = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._copy_due:  # the previous epoch improved and another one follows
            self.weights = self.model.get_weights()
            self._copy_due = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._epochs_seen += 1
        if not self.objective.has_value(logs):
            self._copy_due, self.best_is_last, self.best_index = True, True, self._epochs_seen - 1
            return
        value = self.objective.get_value(logs)
        if self.best_value is None or self.objective.better_than(value, self.best_value):
            self.best_value = value
            self._copy_due, self.best_is_last, self.best_index = True, True, self._epochs_seen - 1
        else:
            self.best_is_last = False


class _Progress(keras.callbacks.Callback):
    """Passes the epoch and its metrics to the heartbeat."""

    def __init__(self, report: Callable[..., None], trial_id: str, execution: int, epochs: int):
        super().__init__()
        self.report, self.trial_id, self.execution, self.epochs = report, trial_id, execution, epochs

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: round(float(v), 5) for k, v in (logs or {}).items()}
        self.report(trial=self.trial_id, epoch=epoch + 1, epochs=self.epochs,
                    execution=self.execution, metrics=metrics)


class _StopCheck(keras.callbacks.Callback):
    """Stops training at the next batch when the worker must stop or lost the trial."""

    def __init__(self, should_stop: Callable[[], bool]):
        super().__init__()
        self.should_stop = should_stop

    def on_train_batch_end(self, batch, logs=None):
        if self.should_stop():
            self.model.stop_training = True

    on_test_batch_end = on_train_batch_end


def checked_build(build: Callable) -> Callable:
    """Wrap a user's build function so a non-model return value is a clear error."""

    def build_model(hp):
        model = build(hp)
        if not isinstance(model, keras.Model):
            raise UsageError(
                f"the hypermodel returned {type(model).__name__}, not a keras.Model; "
                "make the build function return the compiled model"
            )
        return model

    return build_model


class ClusterTuner(kt.Tuner):
    """A Keras Tuner `Tuner` for one tunecluster worker (see the module docstring)."""

    def __init__(self, oracle, hypermodel, *, splits, fit, directory, project_name,
                 distribution_strategy=None, executions_per_trial=1, report=None,
                 idle_backoff_max: float = 1.0, control: Optional[Callable[..., dict]] = None,
                 score_mode: str = "best_epoch", confirm_dir: Optional[str] = None):
        self.splits = splits
        self._control = control
        self.score_mode = score_mode
        self.confirm_dir = Path(confirm_dir) if confirm_dir else Path(directory).parent / "confirm"
        self._seed: Optional[int] = None
        self._confirming = False
        self._space_size = 0
        self.fit_spec = fit
        self._report = report or (lambda **_: None)
        self._flush = lambda: None
        self._set_space = None
        self._idle_backoff_max = idle_backoff_max
        self.trials_run = 0
        self.trials_lost = 0
        self._hypermodel_s = 0.0
        self.stop_requested = threading.Event()
        self.current_trial: Optional[str] = None
        self._lost: set[str] = set()
        self._log = lambda message: print(f"[{self.tuner_id}] {message}", flush=True)
        fast_hp.install()  # Trial.from_state per unit: the space without Keras' slow deserialiser
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
        """Process-wide Keras set-up for many trainings in one process (weights saving, the
        gradient registry that would keep every finished trial's graphs alive)."""
        _memoize_keras_saving_skipsets()
        self._gradients = GradientRegistry()

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
            except (TrialInterrupted, FatalUsage, LeaseLost):
                raise
            except UsageError as exc:  # the user's code is wrong: every trial would fail the same way
                raise FatalUsage(exc, key) from exc
            except Exception as exc:
                self._check_trial(key)
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
            self.trials_run += 1
            self._report(state="between trials", trial=None, work=None)
            return (reply or {}).get("next")
        except LeaseLost as exc:
            self.trials_lost += 1
            self._log(f"{key} was taken back by the chief ({exc}); asking for fresh work")
            self._report(state="lost trial", trial=None, work=None)
            return None
        finally:
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
        model = super()._build_hypermodel(hp)
        self._hypermodel_s = time.perf_counter() - called  # the user's build alone (timing)
        parent = hp.values.get("tuner/trial_id")
        if parent and not self._confirming:  # Hyperband: continue from the parent trial's best weights
            with maybe_distribute(self.distribution_strategy):
                model.load_weights(self._get_checkpoint_fname(parent))
        return model

    def _callbacks(self, trial, unit: dict, epochs: int, best) -> list:
        fit, objective = self.fit_spec, self.oracle.objective
        callbacks = [best, _Progress(self._report, trial.trial_id, unit["index"], epochs),
                     _StopCheck(self._must_stop)]
        if getattr(fit, "tensorboard", False) and unit["kind"] == "search":
            # <run>/tensorboard/<trial>[/execution_<k>]
            callbacks.append(trial_callback(Path(self.directory).parent / "tensorboard", trial,
                                            unit["index"], unit.get("count", 1)))
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
            model = self._try_build(hp)
        finally:
            self._confirming = False
        built = time.time()
        best = _BestWeights(objective)
        history = model.fit(
            s.x_train, s.y_train, validation_data=(s.x_val, s.y_val),
            epochs=epochs, initial_epoch=initial_epoch, batch_size=fit.batch_size,
            verbose=fit.verbose, callbacks=self._callbacks(trial, unit, epochs, best),
        )
        trained = time.time()
        self._check_trial(unit["key"])  # never report a score of an interrupted training
        if not history.history:
            raise RuntimeError("training ran no epoch")
        best_metrics, best_epoch = tuner_utils._get_best_value_and_best_epoch_from_history(history, objective)
        last_epoch = len(next(iter(history.history.values()))) - 1
        last_metrics = {k: v[last_epoch] for k, v in history.history.items() if len(v) > last_epoch}
        restored = self.score_mode == "best_epoch" and best.weights is not None and not best.best_is_last
        if restored:
            model.set_weights(best.weights)  # (the last epoch was the best: nothing to restore)
        held_at = best.best_index if restored else last_epoch  # the epoch whose weights the model holds
        held = {k: v[held_at] for k, v in history.history.items() if held_at is not None and len(v) > held_at}
        degenerate, majority = collapsed_predictions(model, s.x_val, s.y_val, fit.batch_size, logs=held)
        result = {"values": dict(hp.values),  # with those the build registered (conditional layers)
                  "best": _floats(best_metrics), "best_epoch": int(best_epoch),
                  "last": _floats(last_metrics), "last_epoch": int(last_epoch),
                  "degenerate": degenerate, "majority_rate": majority}
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


# Keras' validation accuracy under the names `compile(metrics=[...])` gives it
_ACCURACY_KEYS = ("val_accuracy", "val_acc", "val_binary_accuracy", "val_categorical_accuracy",
                  "val_sparse_categorical_accuracy")


def collapsed_predictions(model, x, y, batch_size: int, logs: Optional[dict] = None
                          ) -> tuple[Optional[bool], Optional[float]]:
    """(whether the model predicts one class for every validation row, the majority-class rate);
    (None, None) when this is not a classification the check understands (or not arrays).

    `logs`: the metrics of the epoch whose weights the model holds. A model that predicts one
    class c for every row is right on exactly the rows of class c, so its validation accuracy is
    count(c) / rows. When Keras' own validation accuracy in `logs` matches no class's count,
    the predictions are provably not all one class and the forward pass over the validation rows
    is skipped (most trainings); otherwise the predictions decide."""
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        return None, None
    labels = np.asarray(y).reshape(len(y), -1)
    shortcut = _varied_by_accuracy(model, labels, logs)
    if shortcut is not None:
        return False, shortcut
    # eager calls in large batches: no predict function to trace for a few hundred rows
    chunks = [np.asarray(model(x[i:i + 4096], training=False)) for i in range(0, len(x), 4096)]
    if not chunks:
        return None, None
    pred = np.concatenate(chunks)
    if pred.ndim == 2 and pred.shape[1] > 1:
        classes = pred.argmax(axis=1)
        truth = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0].astype(int)
    elif pred.size == len(y) and labels.shape[1] == 1 and set(np.unique(labels)) <= {0.0, 1.0}:
        classes = (pred.reshape(-1) > 0.5).astype(int)
        truth = labels[:, 0].astype(int)
    else:
        return None, None
    counts = np.bincount(truth) if truth.size else np.array([0])
    majority = float(counts.max() / max(truth.size, 1))
    return bool(np.unique(classes).size == 1), majority


def _varied_by_accuracy(model, labels: np.ndarray, logs: Optional[dict]) -> Optional[float]:
    """The majority-class rate when `logs`' validation accuracy proves that the predictions are
    not all one class; None when it cannot (no accuracy, an output the check does not know, or an
    accuracy equal to some class's share: then the predictions must be looked at)."""
    accuracy = next((logs[k] for k in _ACCURACY_KEYS if logs and k in logs), None)
    outputs = getattr(model, "outputs", None)
    if accuracy is None or not labels.size or not outputs or len(outputs) != 1:
        return None
    width = outputs[0].shape[-1]
    if width == 1 and labels.shape[1] == 1 and set(np.unique(labels)) <= {0.0, 1.0}:
        truth = labels[:, 0].astype(int)
    elif width is not None and width > 1 and (labels.shape[1] == width or labels.shape[1] == 1):
        if labels.shape[1] == 1 and not np.array_equal(labels, np.round(labels)):
            return None
        truth = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0].astype(int)
    else:
        return None
    if truth.min() < 0:
        return None
    counts = np.bincount(truth, minlength=max(int(width), 2))
    right = float(accuracy) * truth.size
    if np.any(np.abs(counts - right) < 0.5) or right < 0.5:  # could be a one-class model
        return None
    return float(counts.max() / truth.size)


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class Heartbeat(threading.Thread):
    """Sends the worker's progress to the chief: soon after it changes, else every `interval`.

    Changes are coalesced: at most one beat per `min_gap` seconds (0.25), carrying the latest
    state. A worker whose trainings take milliseconds would otherwise send one or two beats per
    training (start, end), several times the calls of the work itself; the live view and the
    leases need a few per second at most. `flush()` still sends at once (a failed trial's note
    must reach the chief before its result)."""

    def __init__(self, send: Callable[[dict], None], tuner_id: str, interval: float = 2.0,
                 min_gap: float = 0.25):
        super().__init__(name="heartbeat", daemon=True)
        self._send = send
        self._state: dict = {"tuner_id": tuner_id, "state": "starting"}
        self._notes: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.interval = interval
        self.min_gap = min(min_gap, interval)
        self.sent = 0  # beats sent (tests, benchmarks)
        self.on_answer: Optional[Callable[[dict], None]] = None

    def report(self, note: bool = False, **fields) -> None:
        with self._lock:
            if note:
                self._notes.append({"tuner_id": self._state["tuner_id"], **fields})
            else:
                self._state.update(fields)
        self._wake.set()

    def flush(self) -> None:
        """Send pending notes now (a trial's error must reach the chief before its EndTrial)."""
        self._send_once()

    def _send_once(self) -> None:
        with self._lock:
            state = dict(self._state)
            notes, self._notes = self._notes, []
        for note in notes:
            self._send({"method": "TrialNote", **note})
        answer = self._send({"method": "Heartbeat", **state})
        self.sent += 1
        if self.on_answer is not None and answer:
            self.on_answer(answer)

    def run(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            # changes that come faster than min_gap ride on one beat with the latest state
            self._stop.wait(max(0.0, last + self.min_gap - time.monotonic()))
            self._wake.clear()
            try:
                self._send_once()
            except Exception:  # the chief may be restarting; the next beat retries
                time.sleep(0.5)
            last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
