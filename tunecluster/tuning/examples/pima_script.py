"""The Pima tutorial's comprehensive search as a plain Keras Tuner script: nothing in it knows
about tunecluster. Run it alone (`python pima_search.py diabetes.csv`) or on a cluster, unchanged:

    tunecluster up --script pima_search.py --workers 4 -- diabetes.csv

Space: 1-10 hidden layers, each Dense(32..512 step 32) with relu/tanh/sigmoid and a dropout of
0.1..0.9; optimizer adam/sgd/rmsprop/adadelta. RandomSearch, val_accuracy, 20 trials, 10 epochs.
"""

import sys

import keras
import keras_tuner as kt
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

csv = sys.argv[1] if len(sys.argv) > 1 else "diabetes.csv"
frame = pd.read_csv(csv)
x = StandardScaler().fit_transform(frame.drop(columns=["Outcome"]).to_numpy("float32"))
y = frame["Outcome"].to_numpy("float32")
x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=42)


def build_model(hp):
    model = keras.Sequential([keras.Input((x.shape[1],))])
    for i in range(hp.Int("num_layers", 1, 10, default=1)):
        model.add(keras.layers.Dense(hp.Int(f"units_{i}", 32, 512, step=32),
                                     activation=hp.Choice(f"activation_{i}", ["relu", "tanh", "sigmoid"])))
        model.add(keras.layers.Dropout(hp.Float(f"dropout_{i}", 0.1, 0.9, step=0.1)))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer=hp.Choice("optimizer", ["adam", "sgd", "rmsprop", "adadelta"]),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=20, seed=42,
                        directory="my_directory", project_name="comprehensive_tuning")
tuner.search(x_train, y_train, epochs=10, validation_data=(x_val, y_val), verbose=0)

best_hp = tuner.get_best_hyperparameters(num_trials=1)[0]
best_model = tuner.get_best_models(num_models=1)[0]
loss, accuracy = best_model.evaluate(x_val, y_val, verbose=0)
print(f"best: {best_hp.values}")
print(f"validation accuracy of the best model: {accuracy:.3f}")
