"""Keras Tuner's state files written atomically.

Keras Tuner writes oracle.json and every trial.json in place (`keras_tuner.src.utils.save_json`):
a chief killed mid-write leaves a torn file that the next chief cannot reload. The replacement
writes a temporary file beside it and renames it (`core.rundir.write_atomic`): the old or the new
content, never a mix. No fsync: the oracle rewrites these files several times per trial under its
lock, and an fsync each time cost more than the rest of the chief's work together (see
docs/performance.md); the OS flushes them within seconds.

Replaces: `keras_tuner.src.utils.save_json` (keras-tuner 1.4.x).
"""

from __future__ import annotations

import json

from tunecluster.core.rundir import write_atomic


def save_json(path, obj) -> str:
    """Keras Tuner's `save_json(path, obj)`, atomic."""
    text = json.dumps(obj)
    write_atomic(path, text, fsync=False)
    return text


def install() -> None:
    import keras_tuner.src.utils as kt_utils

    kt_utils.save_json = save_json
