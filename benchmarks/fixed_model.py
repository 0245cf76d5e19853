"""A hypermodel with one fixed architecture (Pima, 3 x 32 ReLU units, Adam) and a dummy
hyperparameter, so that every trial does the same work: per-trial time can then be compared across
a long search (`worker_leanness.py`). The comprehensive space draws a different network per trial."""

import keras


def build(hp, data):
    hp.Int("trial_tag", 0, 1_000_000)  # distinct trials, same network
    inputs = keras.Input(shape=(data.x_train.shape[1],))
    x = inputs
    for _ in range(3):
        x = keras.layers.Dense(32, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model
