"""The Pima Indians diabetes hypermodels: the four phases of the Keras Tuner tutorial, its
conditional space and its hand-made baseline model.

Each function takes Keras Tuner's `hp` and the data splits (`data.feature_stats()` gives the
training rows' mean and variance). Preprocessing lives inside the model: a `Normalization` layer
built from the training split only, so the saved model takes raw feature rows.

The tutorial fixes some values in its later phases (rmsprop in phases 2-3, 72 units per layer in
phase 3); they are keyword arguments here, so that `up --example pima-all --chain` can pass the
confirmed winners of the earlier phases instead (through the spec's `hypermodel_args`).

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


def build_units(hp, data, optimizer="rmsprop"):
    """Phase 2: how many units in the hidden layer (8..128 step 8), with rmsprop."""
    inputs, x = _inputs(data)
    x = keras.layers.Dense(hp.Int("units", 8, 128, step=8), activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return _compile(keras.Model(inputs, outputs), optimizer)


def build_layers(hp, data, optimizer="rmsprop", units=72):
    """Phase 3: how many hidden layers of 72 units (1..10), with rmsprop."""
    inputs, x = _inputs(data)
    for _ in range(hp.Int("num_layers", 1, 10)):
        x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return _compile(keras.Model(inputs, outputs), optimizer)


def build_comprehensive(hp, data, optimizer=None, num_layers=None):
    """Phase 4: depth, and per layer units, activation and dropout; plus the optimizer. A given
    `optimizer` or `num_layers` is used as it is instead of searched."""
    inputs, x = _inputs(data)
    depth = num_layers if num_layers is not None else hp.Int("num_layers", 1, 10)
    for i in range(depth):
        x = keras.layers.Dense(
            hp.Int(f"units_{i}", 32, 512, step=32),
            activation=hp.Choice(f"activation_{i}", ["relu", "tanh", "sigmoid"]),
        )(x)
        x = keras.layers.Dropout(hp.Float(f"dropout_{i}", 0.1, 0.9, step=0.1))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return _compile(keras.Model(inputs, outputs), optimizer or hp.Choice("optimizer", OPTIMIZERS))


def build_baseline(hp, data):
    """The tutorial's hand-made model before any tuning: one Dense 32 relu layer, Adam. Its values
    are Fixed hyperparameters, so a search of one trial trains it and the confirmation stage
    retrains it like any winner."""
    inputs, x = _inputs(data)
    x = keras.layers.Dense(hp.Fixed("units", 32), activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return _compile(keras.Model(inputs, outputs), hp.Fixed("optimizer", "adam"))


def build_conditional(hp, data):
    """The tutorial's conditional space: `architecture` simple or complex chooses the ranges of the
    depth and the width (and whether there is dropout). Each branch's hyperparameters live in a
    conditional scope, so a trial has values only for its own branch's. (The ranges are
    tunecluster's choice.)"""
    inputs, x = _inputs(data)
    architecture = hp.Choice("architecture", ["simple", "complex"])
    dropout = 0.0
    if architecture == "simple":
        with hp.conditional_scope("architecture", ["simple"]):
            depth = hp.Int("simple_layers", 1, 3)
            width = hp.Int("simple_units", 16, 64, step=16)
    else:
        with hp.conditional_scope("architecture", ["complex"]):
            depth = hp.Int("complex_layers", 4, 10)
            width = hp.Int("complex_units", 64, 512, step=64)
            dropout = hp.Float("complex_dropout", 0.1, 0.5, step=0.1)
    for _ in range(depth):
        x = keras.layers.Dense(width, activation="relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return _compile(keras.Model(inputs, outputs), hp.Choice("optimizer", OPTIMIZERS))
