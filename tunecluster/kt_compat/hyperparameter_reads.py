"""Which hyperparameters a build function (or a `run_trial` function) actually read.

Keras Tuner registers every hyperparameter a search ever met and gives each trial a value for all
of them, though a trial's build reads only some (the Pima comprehensive model with one layer reads
`units_0`, never `units_1 ... units_9`). `reads_of(hp)` records the names read while its block
runs: every value handed out by `hp.Int/Float/Choice/Boolean/Fixed` (Keras Tuner's
`HyperParameters._retrieve`) and by `hp.get(name)` / `hp[name]`, in first-read order; an inactive
hyperparameter (its conditions unmet) is not a read.

Wraps, on one instance and only inside the block: `HyperParameters._retrieve` and `.get`
(keras-tuner 1.4.x).
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def reads_of(hp) -> Iterator[list[str]]:
    """A list that holds, once the block ends, the names read from `hp` inside it."""
    read: list[str] = []
    seen: set[str] = set()
    retrieve, get = hp._retrieve, hp.get

    def note(name: str) -> None:
        if name not in seen:
            seen.add(name)
            read.append(name)

    def _retrieve(hyperparameter):
        value = retrieve(hyperparameter)
        if hyperparameter.name in hp.values:  # active: Keras Tuner gave it a value
            note(hyperparameter.name)
        return value

    def _get(name):
        value = get(name)
        note(hp._get_name(name))
        return value

    hp._retrieve, hp.get = _retrieve, _get
    try:
        yield read
    finally:
        del hp._retrieve, hp.get  # back to the class's methods
