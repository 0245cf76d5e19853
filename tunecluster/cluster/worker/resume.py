"""Trainings that resume: a small checkpoint of every training at its epoch ends (and within
long epochs), and a training that was taken back continuing from it on whichever worker runs it next.

`<run>/checkpoints/<unit>/` (the run folder every role shares) holds:

- `epoch_<n>.weights.h5`: the model's weights and the optimizer's state (Keras' weights file
  carries both) after epoch n (`epoch_<n>_batch_<b>.weights.h5`: after b batches of epoch n + 1);
  the previous one is removed once `state.json` names the new one;
- `best.weights.h5`: the best epoch's weights so far (when the best epoch was checkpointed);
- `state.json`: the whole epochs trained, the batches of the next one (`within`, 0 at an epoch
  end), the history so far (every whole epoch's metrics), the best epoch's index and value, the
  file names, and the model's random streams (Dropout's and the like: `kt_compat.random_streams`;
  Keras' weights file leaves them out).

`fit.checkpoint_seconds` spaces the checkpoints out (30 s by default: a checkpoint costs a
`save_weights` of the model and its optimizer state, ~0.2 s for a 0.5 M-parameter model on a busy
2-core machine, too much at every epoch of trainings whose epochs take milliseconds; 0: every
epoch end; null: none, except ASHA's rung checkpoints, written at the end of every ASHA training).
An epoch longer than that is checkpointed within, after the first batch that ends `checkpoint_seconds`
after the last checkpoint, so a long epoch's work is not lost with its worker. A training resumed
from such a checkpoint runs that epoch again in full from the weights and optimizer state reached
within it (as Keras' `BackupAndRestore` with `save_freq` in batches does): the batches it had
already trained on in that epoch are seen twice, and its epoch count is that of the whole epochs. A worker
that takes a unit with a checkpoint builds the model, builds its optimizer, loads the best and
then the last weights file, and calls `fit` with `initial_epoch` = the epochs trained; the
history and the best epoch carry on from the checkpoint. So a training taken back at epoch e
(lease expired, SIGTERM, SIGKILL, a lost pod, a chief restart) goes on from epoch e on the next
worker instead of from 0. Resumed at an epoch end, it trains exactly as the uninterrupted training
would have: epoch e's shuffle order depends only on a seed drawn after the model's build and e
(`epoch_data.py`, for array data), and the random streams continue from the checkpoint's state. Resumed within an epoch
it is not (that epoch's first batches are trained twice).

Checkpoints are small (one weights file, at most two) and removed when their training's result
is delivered (or it failed), unless `fit.keep_checkpoints`; at any time the folder holds at most
one checkpoint per running or interrupted training.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import keras

from tunecluster.core.rundir import write_atomic
from tunecluster.kt_compat import random_streams

log = logging.getLogger("tunecluster.worker")

STATE = "state.json"
BEST = "best.weights.h5"
BEST_PARTIAL = "best.partial.weights.h5"  # (Keras saves weights only to names ending in .weights.h5)


def unit_folder(checkpoints: Path, key: str) -> Path:
    """`3#0` -> checkpoints/3_0, `confirm:3#1` -> checkpoints/confirm_3_1."""
    return checkpoints / re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def read_state(folder: Path) -> Optional[dict]:
    try:
        state = json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return None
    return state if (folder / state.get("weights", "")).is_file() else None


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Writes the checkpoint at epoch ends (see the module docstring)."""

    def __init__(self, folder: Path, every_seconds: float, best, history: Optional[list] = None,
                 interrupted: Callable[[], bool] = lambda: False, final: bool = False):
        super().__init__()
        self.final = final
        self.folder, self.every_seconds, self.best = folder, every_seconds, best
        self.interrupted = interrupted  # stopped mid-epoch (SIGTERM, lease lost): that epoch is not whole
        self.history: list[dict] = list(history or [])  # every epoch's metrics, the resumed ones first
        self._last_write = time.monotonic()
        self._best_saved: Optional[int] = None
        self._epochs: Optional[int] = None  # the last whole epoch (absolute, 1-based)
        self._written_epochs: Optional[int] = None  # the whole epochs of the last epoch-end checkpoint
        self._epoch: Optional[int] = None  # the epoch under way (absolute, 0-based)
        self.written = 0
        self.resumed_within: Optional[int] = None  # batches of the resumed epoch its checkpoint held

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        """Within a long epoch: a checkpoint once `every_seconds` passed since the last one."""
        if self.every_seconds <= 0 or self._epoch is None:
            return
        if time.monotonic() - self._last_write >= self.every_seconds and not self.interrupted():
            self.write(self._epoch, within=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.interrupted():
            return
        self.history.append({k: float(v) for k, v in (logs or {}).items()})
        self._epochs = epoch + 1
        if time.monotonic() - self._last_write >= self.every_seconds or self.every_seconds <= 0:
            self.write(epoch + 1)

    def on_train_end(self, logs=None):
        """With `final` (ASHA), the last epoch is always written: a promotion continues from it."""
        if self.final and not self.interrupted() and self._epochs is not None and self._epochs != self._written_epochs:
            self.write(self._epochs)

    def write(self, epochs: int, within: int = 0) -> None:
        """Checkpoint after `epochs` whole epochs and `within` batches of the next one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        old = read_state(self.folder)
        if old is not None and self._best_saved is None:
            self._best_saved = old.get("best_saved")  # (from before the resume)
        name = f"epoch_{epochs}_batch_{within}.weights.h5" if within else f"epoch_{epochs}.weights.h5"
        self.model.save_weights(str(self.folder / name))
        best_index = self.best.best_index
        if self.best.best_is_last and best_index is not None and best_index != self._best_saved:
            # the best so far is the last whole epoch: at its end, the model's weights; within
            # the next epoch, the copy BestWeights took at that epoch's start
            if not within:
                shutil.copyfile(self.folder / name, self.folder / BEST_PARTIAL)
                self._best_saved = best_index
            elif self.best.weights is not None:
                current = self.model.get_weights()
                self.model.set_weights(self.best.weights)
                self.model.save_weights(str(self.folder / BEST_PARTIAL))
                self.model.set_weights(current)
                self._best_saved = best_index
            if self._best_saved == best_index:
                os.replace(self.folder / BEST_PARTIAL, self.folder / BEST)
        state = {"epochs": epochs, "within": within, "weights": name, "history": self.history,
                 "best_saved": self._best_saved, "best_value": self.best.best_value,
                 "random_streams": random_streams.read(self.model)}
        write_atomic(self.folder / STATE, json.dumps(state), fsync=False)
        if old is not None and old.get("weights") != name:
            try:
                os.remove(self.folder / old["weights"])
            except OSError:
                pass
        self._last_write = time.monotonic()
        self._written_epochs = None if within else epochs
        self.written += 1


def restore(model, folder: Path, best, epochs: int) -> Optional[dict]:
    """Load `folder`'s checkpoint into a freshly built `model` (weights and optimizer state) and
    `best` (the BestWeights callback); returns the checkpoint's state, or None when there is
    none (or it does not fit this training: more epochs than it has)."""
    state = read_state(folder)
    if state is None:
        return None
    done, within = int(state["epochs"]), int(state.get("within") or 0)
    if not (0 <= done < epochs if within else 0 < done <= epochs):
        return None
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # (its state loads only into built variables)
    seen = len(state.get("history") or [])  # this training's epochs (Hyperband's start at its initial_epoch)
    best_saved = state.get("best_saved")
    # the weights file holds the best epoch's weights only when it is that epoch's end
    holds_best = not within and best_saved == seen - 1
    if best_saved is not None and not holds_best and (folder / BEST).is_file():
        model.load_weights(str(folder / BEST))
        best.weights = model.get_weights()
    model.load_weights(str(folder / state["weights"]))
    if state.get("random_streams") is not None:
        random_streams.restore(model, state["random_streams"])
    best.resume(seen, best_saved, state.get("best_value"), holds_best=holds_best)
    return state


def prepare(model, folder: Path, best, epochs: int, every_seconds: Optional[float],
            interrupted: Callable[[], bool] = lambda: False, final: bool = False):
    """(the epoch to start from or None, the checkpoint callback or None) for one training:
    its checkpoint restored when there is one; no callback when checkpoints are off."""
    if every_seconds is None:
        return None, None
    state = restore(model, folder, best, epochs)
    history = (state or {}).get("history")
    checkpoint = TrainingCheckpoint(folder, every_seconds, best, history, interrupted, final)
    if state:
        checkpoint.resumed_within = int(state.get("within") or 0)
    return (int(state["epochs"]) if state else None), checkpoint


def start(tuner, model, unit: dict, values: dict, best, epochs: int, confirm: bool):
    """(the epoch to start from or None, whether it continues a promoted trial, the checkpoint
    callback or None) for one training of `tuner` (a ClusterTuner)."""
    folder = tuner._checkpoint_folder(unit["key"])
    every = getattr(tuner.fit_spec, "checkpoint_seconds", None)
    rungs = tuner.top_rung is not None and not confirm  # ASHA: the rung checkpoint is always written
    resumed, checkpoint = prepare(model, folder, best, epochs, float("inf") if rungs and every is None else every,
                                  tuner._must_stop, final=rungs)
    if resumed is not None:
        if checkpoint.resumed_within:
            tuner._log(f"{unit['key']} resumes from its checkpoint within epoch {resumed + 1} (after "
                       f"{checkpoint.resumed_within} batches; that epoch runs again in full)")
        else:
            tuner._log(f"{unit['key']} resumes from its checkpoint after epoch {resumed}")
        return resumed, False, checkpoint
    if checkpoint is not None and not confirm:
        promoted = continue_promotion(model, folder.parent, values, unit["index"], best, epochs, checkpoint)
        if promoted is not None:
            log.info("%s: %s continues trial %s's rung checkpoint after epoch %d", tuner.tuner_id, unit["key"],
                     *promoted)
            return promoted[1], True, checkpoint
    return None, False, checkpoint


def continue_promotion(model, checkpoints: Path, values: dict, index: int, best, epochs: int,
                       checkpoint: TrainingCheckpoint) -> Optional[tuple[str, int]]:
    """A promoted trial (ASHA: `tuner/trial_id` names the trial it continues) starts from that
    trial's rung checkpoint - weights, optimizer state, history - when it was kept; returns
    (that trial, its epochs) or None (then Keras Tuner's way applies: its best weights only)."""
    parent = values.get("tuner/trial_id")
    if not parent:
        return None
    for key in dict.fromkeys((f"{parent}#{index}", f"{parent}#0")):
        state = restore(model, unit_folder(checkpoints, key), best, epochs)
        if state is not None:
            checkpoint.history = list(state.get("history") or [])
            return parent, int(state["epochs"])
    return None


def delivered(checkpoints: Path, key: str, values: dict, top_rung: Optional[int]) -> None:
    """A training's result is in: its checkpoint goes, unless ASHA may still promote it (below
    the top rung: `top_rung` is ASHA's max_epochs); the rung checkpoint it continued goes too."""
    parent = values.get("tuner/trial_id")
    index = key.rpartition("#")[2]
    if parent and top_rung is not None and not key.startswith("confirm:"):
        remove(unit_folder(checkpoints, f"{parent}#{index}"))
    epochs = values.get("tuner/epochs")
    if top_rung is None or key.startswith("confirm:") or epochs is None or epochs >= top_rung:
        remove(unit_folder(checkpoints, key))


def history_of(checkpoint: Optional[TrainingCheckpoint], history):
    """The training's whole history (the resumed epochs first) as a Keras-like `History`."""
    if checkpoint is None:
        return history
    columns: dict[str, list] = {}
    for index, logs in enumerate(checkpoint.history):
        for name, value in logs.items():
            columns.setdefault(name, [None] * index).append(value)
    return type("ResumedHistory", (), {"history": columns})()
