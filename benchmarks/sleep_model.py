"""A hypermodel whose `fit` takes a fixed time (a sleep) instead of training, for measuring what
the cluster itself costs per trial (`overhead.py`). The model is a real one-layer Keras model, so
checkpoints and the best-model export work as usual; callbacks see one epoch with made-up metrics.
`SLEEP_MODEL_SECONDS` sets the fit time (default 0.5)."""

import os
import time

import keras


def build(hp, data):
    x = hp.Int("x", 0, 1_000_000)
    inputs = keras.Input(shape=(data.x_train.shape[1],))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    seconds = float(os.environ.get("SLEEP_MODEL_SECONDS", "0.5"))
    score = 0.5 + (x % 1000) / 2000.0

    def fit(*args, callbacks=None, **kwargs):
        history = keras.callbacks.History()
        history.set_model(model)
        history.on_train_begin()
        for callback in callbacks or []:
            callback.set_model(model)
        time.sleep(seconds)
        logs = {"loss": 1.0 - score, "accuracy": score, "val_loss": 1.0 - score, "val_accuracy": score}
        for callback in [*(callbacks or []), history]:
            callback.on_epoch_end(0, logs)
        return history

    model.fit = fit
    return model
