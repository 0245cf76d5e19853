"""TensorBoard logging for each trial: per-epoch scalars and the trial's hyperparameters through
the HParams plugin, so `tensorboard --logdir <run>/tensorboard` shows the HParams table and
parallel-coordinates view.

Layout, one HParams session per trial (per execution when `executions_per_trial` > 1):

    <run>/tensorboard/<trial_id>[/execution_<k>]/            the session (hyperparameter values)
    <run>/tensorboard/<trial_id>[/execution_<k>]/train/      epoch_loss, epoch_accuracy, ...
    <run>/tensorboard/<trial_id>[/execution_<k>]/validation/ the same names for the val_ metrics

the names and folders Keras' own TensorBoard callback uses, so charts of train and validation
overlay. A training that does not simply run from epoch 1 to its last says so in the session's
Text tab (tag `tunecluster/training`, at the epoch it concerns): one promoted by ASHA or continuing
a Hyperband round from another trial's weights, one resumed from its checkpoint after a take-back,
and one the chief stopped early (median stopping); epochs are absolute, so a continued training's
curve starts where its parent's stopped. Kept cheap: scalars once per epoch, no graph, no
histograms, no profiling; the three writers open at the start of training and close at its end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import keras


def session_dir(root: str | Path, trial_id: str, execution: int, executions: int) -> Path:
    """Where one trial's (execution's) events go."""
    path = Path(root) / str(trial_id)
    return path / f"execution_{execution}" if executions > 1 else path


def _hparam_value(value):
    """HParams accepts bool, int, float and str; anything else is written as its text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class TrialTensorBoard(keras.callbacks.Callback):
    """Writes a trial's hyperparameters at the start of training and its metrics every epoch."""

    def __init__(self, logdir: str | Path, trial_id: str, hyperparameters: dict,
                 start_note: Optional[tuple[int, str]] = None, stopped_at: Optional[Callable[[], Optional[int]]] = None):
        super().__init__()
        self.logdir = Path(logdir)
        self.trial_id = str(trial_id)
        self.hyperparameters = {k: _hparam_value(v) for k, v in hyperparameters.items()}
        self.start_note = start_note  # (epoch, text): how this training started, when not from scratch
        self.stopped_at = stopped_at  # the epoch (1-based) the chief stopped it at, or None
        self._writers: dict = {}

    def _writer(self, group: str):
        import tensorflow as tf

        if group not in self._writers:
            path = self.logdir / group if group else self.logdir
            self._writers[group] = tf.summary.create_file_writer(str(path))
        return self._writers[group]

    def on_train_begin(self, logs=None):
        from tensorboard.plugins.hparams import api as hparams_api

        with self._writer("").as_default():
            hparams_api.hparams(self.hyperparameters, trial_id=self.trial_id, start_time_secs=int(time.time()))
        if self.start_note is not None:
            self.note(*self.start_note)

    def note(self, epoch: int, text: str) -> None:
        """A line in the session's Text tab at `epoch` (0-based step, like the scalars)."""
        import tensorflow as tf

        with self._writer("").as_default():
            tf.summary.text("tunecluster/training", text, step=max(0, epoch))

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        by_group: dict[str, dict[str, float]] = {"train": {}, "validation": {}}
        for name, value in (logs or {}).items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if name.startswith("val_"):
                by_group["validation"][f"epoch_{name[4:]}"] = number
            else:
                by_group["train"][f"epoch_{name}"] = number
        for group, scalars in by_group.items():
            if not scalars:
                continue
            with self._writer(group).as_default():
                for tag, number in scalars.items():
                    tf.summary.scalar(tag, number, step=epoch)

    def on_train_end(self, logs=None):
        stopped = self.stopped_at() if self.stopped_at is not None else None
        if stopped is not None:
            self.note(stopped - 1, f"stopped early by the chief after epoch {stopped}")
        self.close()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def __del__(self):  # a training that raised still releases its files
        try:
            self.close()
        except Exception:
            pass


def trial_callback(root: Optional[str | Path], trial, execution: int, executions: int, values: dict,
                   start_note: Optional[tuple[int, str]] = None,
                   stopped_at: Optional[Callable[[], Optional[int]]] = None) -> Optional[TrialTensorBoard]:
    """The callback for one execution of `trial` with its hyperparameters' `values` (those its
    build read), or None when TensorBoard logging is off; `start_note` and `stopped_at` as in
    `TrialTensorBoard`."""
    if root is None:
        return None
    return TrialTensorBoard(session_dir(root, trial.trial_id, execution, executions), trial.trial_id, values,
                            start_note=start_note, stopped_at=stopped_at)


def _event_writer(path: Path):
    """TensorBoard's own event file writer; without TensorFlow in the process (a run_trial worker)
    it runs in TensorBoard's TF-free mode (its `notf` marker: pure-Python file I/O)."""
    import sys
    import types

    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    return EventFileWriter(str(path))


def write_history(root: Optional[str | Path], trial, execution: int, executions: int, history: list[dict],
                  started: float, values: dict) -> None:
    """A run_trial training's session, written after it returned, in the layout of
    `TrialTensorBoard`: its hyperparameters, and each epoch's metrics under train/ and validation/."""
    if root is None:
        return
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2

    logdir = session_dir(root, trial.trial_id, execution, executions)
    values = {k: _hparam_value(v) for k, v in values.items()}
    session = summary_v2.hparams_pb(values, trial_id=str(trial.trial_id), start_time_secs=int(started))
    writer = _event_writer(logdir)
    writer.add_event(event_pb2.Event(wall_time=started, step=0, summary=session))
    writer.close()
    groups: dict[str, list] = {"train": [], "validation": []}
    for epoch, logs in enumerate(history):
        for name, value in logs.items():
            group, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=f"epoch_{tag}",
                                                                           simple_value=float(value))])
            groups[group].append(event_pb2.Event(wall_time=time.time(), step=epoch, summary=summary))
    for group, events in groups.items():
        if events:
            writer = _event_writer(logdir / group)
            for event in events:
                writer.add_event(event)
            writer.close()
