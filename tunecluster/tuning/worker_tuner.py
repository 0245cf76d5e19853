"""The worker's Keras Tuner `Tuner`: runs trials handed out by the chief, many per process.

A subclass of `keras_tuner.Tuner`, so Keras Tuner's own client (`OracleClient`), trial protocol,
scoring and checkpoint layout are used unchanged. What it changes:

- the search loop sleeps with back-off while the oracle answers IDLE (stock Keras Tuner spins);
- it sends the search space to the chief at start (the chief does not import TensorFlow);
- each trial keeps its best epoch's weights in memory and writes the checkpoint once at the end
  (stock Keras Tuner writes a file at every improving epoch);
- Keras state is cleared before every build, so memory does not grow across trials;
- Hyperband's epochs and parent checkpoints work as in `keras_tuner.Hyperband`;
- progress (trial, epoch, metrics) goes to the chief through heartbeats, and the type and message
  of a trial's error are reported before the trial is ended;
- a trial whose lease the chief took back (the heartbeat's answer names it, or the chief refuses
  its result) is abandoned at the next batch and the worker asks for a fresh one;
- with `fit.tensorboard`, each trial logs its epochs and hyperparameters for TensorBoard's HParams
  view under `<run>/tensorboard/` (`tensorboard_log`);
- `request_stop()` (SIGTERM) ends training at the next batch and raises `TrialInterrupted`, so the
  caller gives the trial back instead of reporting a half-trained score.
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import keras
import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.tuner import maybe_distribute

from tunecluster.cluster.chief_link import ResultRefused
from tunecluster.errors import UsageError
from tunecluster.tuning.tensorboard_log import trial_callback


class LeaseLost(BaseException):
    """The chief took this trial back (lease expired); its result would be refused."""


class FatalUsage(BaseException):
    """A usage error inside a trial (e.g. the hypermodel returned no model): stop the worker
    (Keras Tuner would record it as a failed trial and try the next)."""

    def __init__(self, error: UsageError):
        super().__init__(str(error))
        self.error = error


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
    """Remembers the weights of the best epoch (by the objective) across a trial's executions."""

    def __init__(self, objective):
        super().__init__()
        self.objective = objective
        self.best_value: Optional[float] = None
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self.objective.has_value(logs):
            self.weights = self.model.get_weights()
            return
        value = self.objective.get_value(logs)
        if self.best_value is None or self.objective.better_than(value, self.best_value):
            self.best_value = value
            self.weights = self.model.get_weights()


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
                 idle_backoff_max: float = 1.0):
        self.splits = splits
        self.fit_spec = fit
        self._report = report or (lambda **_: None)
        self._flush = lambda: None
        self._set_space = None
        self._idle_backoff_max = idle_backoff_max
        self.last_error: Optional[BaseException] = None
        self.trials_run = 0
        self.trials_lost = 0
        self.stop_requested = threading.Event()
        self.current_trial: Optional[str] = None
        self._lost: set[str] = set()
        self._log = lambda message: print(f"[{self.tuner_id}] {message}", flush=True)
        super().__init__(
            oracle=oracle,
            hypermodel=hypermodel,
            directory=directory,
            project_name=project_name,
            overwrite=False,  # never: it deletes the shared project directory
            distribution_strategy=distribution_strategy,
            executions_per_trial=executions_per_trial,
        )

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
            set_space(local.get_space().get_config())
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
        backoff = Backoff(maximum=self._idle_backoff_max)
        self.on_search_begin()
        while not self.stop_requested.is_set():
            self.pre_create_trial()
            trial = self.oracle.create_trial(self.tuner_id)
            if trial.status == trial_module.TrialStatus.STOPPED:
                break
            if trial.status == trial_module.TrialStatus.IDLE:
                self._report(state="idle", trial=None)
                self.stop_requested.wait(backoff.next())
                continue
            backoff.reset()
            if self.stop_requested.is_set():  # SIGTERM while the request was on its way
                raise TrialInterrupted(trial.trial_id)
            self.current_trial = trial.trial_id
            self._lost.discard(trial.trial_id)
            self._report(state="running", trial=trial.trial_id, epoch=0, metrics={})
            try:
                self.on_trial_begin(trial)
                self._try_run_and_update_trial(trial, *fit_args, **fit_kwargs)
                if trial.trial_id in self._lost:  # (a finished trial is still ended on SIGTERM)
                    raise LeaseLost(trial.trial_id)
                self.on_trial_end(trial)
            except (LeaseLost, ResultRefused) as exc:
                self.trials_lost += 1
                self._log(f"trial {trial.trial_id} was taken back by the chief ({exc}); "
                          "asking for a fresh trial")
                self._report(state="lost trial", trial=None)
                continue
            finally:
                if not self.stop_requested.is_set():
                    self.current_trial = None
            self.trials_run += 1
            self._report(state="between trials", trial=None)
        self._report(state="stopped", trial=None)
        self.on_search_end()

    def _run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        self.last_error = None
        try:
            return super()._run_and_update_trial(trial, *fit_args, **fit_kwargs)
        except ResultRefused as exc:  # an update refused: the lease is gone
            raise LeaseLost(str(exc)) from None
        except UsageError as exc:  # the user's code is wrong: every trial would fail the same way
            raise FatalUsage(exc) from exc
        except BaseException as exc:
            self.last_error = exc
            raise

    def on_trial_end(self, trial):
        if self._set_space is not None:
            # Hyperparameters first seen in this trial reach the chief in declaration order
            # (EndTrial's proto would group them by type and change a seeded search's samples).
            self._set_space(trial.hyperparameters.get_config())
        if trial.status in (trial_module.TrialStatus.INVALID, trial_module.TrialStatus.FAILED):
            exc = self.last_error
            self._report(
                note=True,
                trial_id=trial.trial_id,
                error_type=type(exc).__name__ if exc else "Error",
                message=str(exc) if exc else ((trial.message or "").strip().splitlines() or [""])[-1],
                traceback=trial.message,
            )
            self._flush()
        self.oracle.end_trial(trial)

    # --- one trial ---------------------------------------------------------------------------
    def _build_hypermodel(self, hp):
        model = super()._build_hypermodel(hp)
        parent = hp.values.get("tuner/trial_id")
        if parent:  # Hyperband: continue from the parent trial's best weights
            with maybe_distribute(self.distribution_strategy):
                model.load_weights(self._get_checkpoint_fname(parent))
        return model

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        fit = self.fit_spec
        epochs = int(hp.values.get("tuner/epochs", fit.epochs))
        initial_epoch = int(hp.values.get("tuner/initial_epoch", 0))
        objective = self.oracle.objective
        best = _BestWeights(objective)
        histories = []
        model = None
        for execution in range(self.executions_per_trial):
            model = self._try_build(hp)
            callbacks = [best, _Progress(self._report, trial.trial_id, execution, epochs),
                         _StopCheck(self._must_stop)]
            if getattr(fit, "tensorboard", False):  # <run>/tensorboard/<trial>[/execution_<k>]
                callbacks.append(trial_callback(Path(self.directory).parent / "tensorboard", trial,
                                                execution, self.executions_per_trial))
            if fit.early_stopping_patience:
                callbacks.append(keras.callbacks.EarlyStopping(
                    monitor=objective.name, mode=objective.direction,
                    patience=fit.early_stopping_patience))
            s = self.splits
            history = model.fit(
                s.x_train, s.y_train, validation_data=(s.x_val, s.y_val),
                epochs=epochs, initial_epoch=initial_epoch, batch_size=fit.batch_size,
                verbose=fit.verbose, callbacks=callbacks,
            )
            histories.append(history)
            self._check_trial(trial.trial_id)  # never report a score of an interrupted training
        if best.weights is not None and model is not None:
            model.set_weights(best.weights)
            model.save_weights(self._get_checkpoint_fname(trial.trial_id))
            kt.src.utils.save_json(self._get_build_config_fname(trial.trial_id), model.get_build_config())
        return histories

    # --- export ---------------------------------------------------------------------------------
    def best_trial(self):
        trials = self.oracle.get_best_trials(1)
        if not trials or trials[0].status != trial_module.TrialStatus.COMPLETED:
            return None
        return trials[0]


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class Heartbeat(threading.Thread):
    """Sends the worker's progress to the chief: at once when it changes, else every `interval`."""

    def __init__(self, send: Callable[[dict], None], tuner_id: str, interval: float = 2.0):
        super().__init__(name="heartbeat", daemon=True)
        self._send = send
        self._state: dict = {"tuner_id": tuner_id, "state": "starting"}
        self._notes: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.interval = interval
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
        if self.on_answer is not None and answer:
            self.on_answer(answer)

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._send_once()
            except Exception:  # the chief may be restarting; the next beat retries
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
