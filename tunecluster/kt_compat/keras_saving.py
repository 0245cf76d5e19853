"""Keras' weight saving without rebuilding its attribute skip-sets on every save and load.

Keras' weight saving walks the model's attributes, skipping those of reference objects (a fresh
Layer, Optimizer, Metric, ... built and listed with dir()). Keras 3 means to cache these sets in
its global state but stores them under another key than it reads (and `clear_session`, run
before every build, would drop them anyway), so every `save_weights` and `load_weights` rebuilt
them: ~20-30 ms per training here. They depend only on Keras' classes, so one set per object type
for the whole process gives the same walk.

Replaces: `keras.src.saving.saving_lib.get_attr_skipset` (Keras 3.x) with a memoised copy.
"""

from __future__ import annotations

import functools


def install() -> None:
    from keras.src.saving import saving_lib

    original = saving_lib.get_attr_skipset
    if not getattr(original, "_tunecluster_memo", False):
        memo = functools.lru_cache(maxsize=None)(original)
        memo._tunecluster_memo = True
        saving_lib.get_attr_skipset = memo
