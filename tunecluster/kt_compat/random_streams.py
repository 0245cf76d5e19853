"""The state of a Keras model's random streams (Dropout's, GaussianNoise's, ...), to checkpoint
and restore with its weights.

Keras 3 draws a layer's randomness from a `keras.random.SeedGenerator` whose state is a variable
that advances at every call; `model.variables` holds it, but `save_weights` does not (it writes
each layer's trainable and non-trainable weights only). A training resumed from a weights file
alone would therefore draw its dropout masks from the stream's start again. These two functions
read and set those states: the variables in `model.variables` that are not in `model.weights`
and that Keras names `seed_generator_state` (Keras 3.15, `keras/src/random/seed_generator.py`:
an integer variable of shape (2,)). The name and the split between `variables` and `weights` are
Keras' internals, hence this package and its version gate.
"""

from __future__ import annotations

import numpy as np

STATE_NAME = "seed_generator_state"


def _states(model) -> list:
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables
            if id(v) not in weights and STATE_NAME in (getattr(v, "path", None) or v.name)]


def read(model) -> list[list[int]]:
    """Every random stream's state, in the model's variable order (a JSON-ready list)."""
    return [np.asarray(v.numpy()).astype("int64").tolist() for v in _states(model)]


def restore(model, states: list) -> bool:
    """Set the random streams to `states` (from `read` on a model of the same architecture);
    False, leaving them as they are, when the count or shapes differ."""
    variables = _states(model)
    if len(variables) != len(states):
        return False
    values = [np.asarray(s) for s in states]
    if any(tuple(v.shape) != value.shape for v, value in zip(variables, values)):
        return False
    for variable, value in zip(variables, values):
        variable.assign(value.astype(variable.dtype))
    return True
