"""The Keras callbacks of a worker's trainings, and the check on the user's build function.

- `BestWeights` keeps the best epoch's weights in memory (one weights file at the end instead of
  Keras Tuner's file at every improving epoch);
- `ProgressReport` passes each epoch and its metrics to the heartbeat (the live view);
- `StopCheck` ends training at the next batch when the worker must stop or lost its trial;
- `EpochBoundaryStop` ends training at the next epoch end when the chief stops it early;
- `checked_build` makes a build function that returns no model a clear usage error.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras

from tunecluster.core.errors import UsageError


class BestWeights(keras.callbacks.Callback):
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

    def resume(self, epochs_seen: int, best_index: Optional[int], best_value: Optional[float],
               holds_best: bool = True) -> None:
        """Carry on from a checkpoint after `epochs_seen` epochs (`weights` already holds the best
        epoch's weights when the model does not: it was not the last epoch, or `holds_best` is
        False because the checkpoint was taken within the next epoch)."""
        self._epochs_seen, self.best_index, self.best_value = epochs_seen, best_index, best_value
        self.best_is_last = holds_best and best_index is not None and best_index == epochs_seen - 1
        if self.best_is_last:
            self.weights = None
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


class ProgressReport(keras.callbacks.Callback):
    """Passes the epoch and its metrics to the heartbeat: the live view's latest state, and
    (`record`) every epoch of the training's curve for the chief."""

    def __init__(self, report: Callable[..., None], trial_id: str, execution: int, epochs: int,
                 record: Optional[Callable[[int, dict], None]] = None):
        super().__init__()
        self.report, self.trial_id, self.execution, self.epochs = report, trial_id, execution, epochs
        self.record = record

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: round(float(v), 5) for k, v in (logs or {}).items()}
        self.report(trial=self.trial_id, epoch=epoch + 1, epochs=self.epochs,
                    execution=self.execution, metrics=metrics)
        if self.record is not None:
            self.record(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})


class EpochBoundaryStop(keras.callbacks.Callback):
    """Ends training at the end of the current epoch once `should_stop()` says so (the chief
    stopped this training early); `stopped_at` is the last epoch trained (1-based)."""

    def __init__(self, should_stop: Callable[[], bool]):
        super().__init__()
        self.should_stop = should_stop
        self.stopped_at: Optional[int] = None

    def on_epoch_end(self, epoch, logs=None):
        if self.should_stop():
            self.model.stop_training = True
            self.stopped_at = epoch + 1


class StopCheck(keras.callbacks.Callback):
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
