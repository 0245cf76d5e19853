"""Seeds of individual trainings: one per (experiment seed, stage, trial id, index).

Keras Tuner seeds a run with `seed` and then `seed + 1, seed + 2, ...`, so consecutive seeds give
shifted copies of the same sequence. Here every training's seed is a hash of all four parts, so a
run is reproducible (same spec and seed, same seeds) and no two trainings of a run, or of runs with
neighbouring seeds, share one. Pure Python: the chief computes them, the workers apply them.
"""

from __future__ import annotations

import hashlib
from typing import Optional

SEARCH = "search"
CONFIRM = "confirm"


def training_seed(experiment_seed: Optional[int], trial_id: str, index: int, stage: str = SEARCH) -> int:
    """A 31-bit seed for training `index` of trial `trial_id` in `stage` (search or confirm)."""
    text = f"tunecluster/{experiment_seed if experiment_seed is not None else 'none'}/{stage}/{trial_id}/{index}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
