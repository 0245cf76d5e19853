"""A hypermodel whose every epoch is a fixed sleep (`EPOCH_SLEEP_SECONDS`, default 0.1) with a
made-up learning curve, for measuring how busy a search keeps its workers when trainings differ in
length (Hyperband's rounds, ASHA's rungs) on more workers than this machine has cores for real
training (`early_stopping.py --model sleep`).

The model is a real one-layer Keras model (checkpoints, Hyperband's weight loading and the export
work as usual); `fit` runs epochs `initial_epoch .. epochs - 1`, each a sleep followed by the
callbacks' `on_epoch_end` with `val_accuracy` rising towards a ceiling set by the hyperparameter
`x`, so that rankings at every epoch agree with the final ones; a callback that sets
`model.stop_training` (median stopping, ASHA's rung end) ends it at that epoch.
"""

import math
import os
import time

import keras


def build(hp, data):
    x = hp.Int("x", 0, 1000)
    hp.Choice("shape", ["a", "b", "c"])  # a second hyperparameter, as searches have several
    inputs = keras.Input(shape=(data.x_train.shape[1],))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    seconds = float(os.environ.get("EPOCH_SLEEP_SECONDS", "0.1"))
    ceiling = 0.5 + x / 2000.0

    def fit(*args, epochs=1, initial_epoch=0, callbacks=None, **kwargs):
        history = keras.callbacks.History()
        callbacks = [*(callbacks or []), history]
        model.stop_training = False
        for callback in callbacks:
            callback.set_model(model)
            callback.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            time.sleep(seconds)
            score = ceiling * (1.0 - math.exp(-(epoch + 1) / 5.0))
            logs = {"loss": 1.0 - score, "accuracy": score, "val_loss": 1.0 - score, "val_accuracy": score}
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end()
        return history

    model.fit = fit
    return model
