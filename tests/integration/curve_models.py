"""Model and data files for the early-stopping and resume tests: a separable two-feature task
(every sound configuration learns it), one configuration that cannot learn (learning rate 0,
zero weights: stuck at chance), and a per-epoch (`EPOCH_PAUSE`) or per-batch (`BATCH_PAUSE`)
pause so that a test can act mid-training."""

LOADER = '''
import numpy as np

def load():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(1200, 2)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
    return x[:900], y[:900], x[900:], y[900:]
'''

MODEL = '''
import os
import time

import keras


class SlowEpochs(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(float(os.environ.get("EPOCH_PAUSE", "0")))

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(float(os.environ.get("BATCH_PAUSE", "0")))


def build(hp):
    config = hp.Choice("config", ["sound_a", "sound_b", "sound_c", "sound_d", "hopeless"])
    hopeless = config == "hopeless"
    if not hopeless:
        keras.utils.set_random_seed(0)  # the sound configurations train identically
    inputs = keras.Input(shape=(2,))
    init = "zeros" if hopeless else "glorot_uniform"
    hidden = keras.layers.Dense(8, activation="relu", kernel_initializer=init)(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=init)(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.0 if hopeless else 0.05),
                  loss="binary_crossentropy", metrics=["accuracy"])
    if os.environ.get("EPOCH_PAUSE") or os.environ.get("BATCH_PAUSE"):
        original = model.fit
        def fit(*args, callbacks=None, **kwargs):
            return original(*args, callbacks=list(callbacks or []) + [SlowEpochs()], **kwargs)
        model.fit = fit
    return model
'''

ASHA_MODEL = '''
import os
import time

import keras


class SlowEpochs(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(float(os.environ.get("EPOCH_PAUSE", "0")))


def build(hp):
    rate = hp.Float("learning_rate", 1e-5, 0.1, sampling="log")
    inputs = keras.Input(shape=(2,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="binary_crossentropy", metrics=["accuracy"])
    original = model.fit
    def fit(*args, callbacks=None, **kwargs):
        return original(*args, callbacks=list(callbacks or []) + [SlowEpochs()], **kwargs)
    model.fit = fit
    return model
'''
