"""Whether a classifier's predictions collapsed to one class (a "degenerate" trial, flagged in
the results): from Keras' own validation accuracy when it proves they did not, else from one
forward pass over the validation rows."""

from __future__ import annotations

from typing import Optional

import numpy as np


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
