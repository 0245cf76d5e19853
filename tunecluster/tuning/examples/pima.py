"""The Pima Indians diabetes hypermodels: the four phases of the Keras Tuner tutorial.

Each function takes Keras Tuner's `hp` and the data splits (`data.feature_stats()` gives the
training rows' mean and variance). Preprocessing lives inside the model: a `Normalization` layer
built from the training split only, so the saved model takes raw feature rows.

This file is self-contained (it imports only Keras): `tunecluster init --example pima` copies it
as `model.py` for you to edit.
"""

import keras

OPTIMIZERS = ["adam", "sgd", "rmsprop", "adadelta"]


def _inputs(data):
    """Raw features in, normalised with the training split's statistics."""
    mean, variance = data.feature_stats()
    inputs = keras.Input(shape=(len(mean),), name="features")
    normalized = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(inputs)
    return inputs, normalized


def _compile(model, optimizer):
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    return model


def build_optimizer(hp, data):
    """Phase 1: Dense 32 relu + sigmoid; which optimizer?"""
    inputs, x = _inputs(data)
    x = keras.layers.Dense(32, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    return _compile(model, hp.Choice("optimizer", OPTIMIZERS))


def build_units(hp, data):
    """Phase 2: how many units in the hidden layer (8..128 step 8), with rmsprop."""
    inputs, x = _inputs(data)
    x = keras.layers.Dense(hp.Int("units", 8, 128, step=8), activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return _compile(keras.Model(inputs, outputs), "rmsprop")


def build_layers(hp, data):
    """Phase 3: how many hidden layers of 72 units (1..10), with rmsprop."""
    inputs, x = _inputs(data)
    for _ in range(hp.Int("num_layers", 1, 10)):
        x = keras.layers.Dense(72, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return _compile(keras.Model(inputs, outputs), "rmsprop")


def build_comprehensive(hp, data):
    """Phase 4: depth, and per layer units, activation and dropout; plus the optimizer."""
    inputs, x = _inputs(data)
    for i in range(hp.Int("num_layers", 1, 10)):
        x = keras.layers.Dense(
            hp.Int(f"units_{i}", 32, 512, step=32),
            activation=hp.Choice(f"activation_{i}", ["relu", "tanh", "sigmoid"]),
        )(x)
        x = keras.layers.Dropout(hp.Float(f"dropout_{i}", 0.1, 0.9, step=0.1))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return _compile(keras.Model(inputs, outputs), hp.Choice("optimizer", OPTIMIZERS))
