"""Unmodified Keras Tuner scripts, as their users write them (nothing in them knows tunecluster),
for the `up --script` tests of every tier: a RandomSearch, a Hyperband, a custom `run_trial` Tuner
subclass, and the Pima tutorial's four phases (`../shared/docs/pima-tutorial.md`: each phase's
space, directory and project name; the budgets are the tutorial's unless the script's arguments
give others: `SCRIPT CSV [MAX_TRIALS EPOCHS]`). Each prints `BEST {json}` (its best
hyperparameters and the best model's validation accuracy) after `search()`, in every role.

`validation_rows(name, csv)` gives the rows a script validates on, to score an exported model."""

from __future__ import annotations

import textwrap

COMMON = textwrap.dedent("""
    import json, sys
    import keras, keras_tuner, pandas as pd
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(sys.argv[1])
    x = frame.drop(columns=["Outcome"]).to_numpy("float32"); y = frame["Outcome"].to_numpy("float32")
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=42)

    def build(hp):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Normalization(),
                                  keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.layers[0].adapt(x_train)
        model.compile(optimizer=hp.Choice("optimizer", ["adam", "rmsprop"]),
                      loss="binary_crossentropy", metrics=["accuracy"])
        return model
""")
TAIL = textwrap.dedent("""
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=EPOCHS, verbose=0)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    model = tuner.get_best_models(1)[0]
    print("BEST " + json.dumps({"values": best_hp.values,
                                "accuracy": float(model.evaluate(x_val, y_val, verbose=0)[1])}), flush=True)
""")
SCRIPTS = {
    # each as a Keras Tuner user writes it: its own directory, even overwrite=True
    "random_search.py": COMMON + textwrap.dedent("""
        tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=4, seed=7,
                                         directory="my_dir", project_name="pima", overwrite=True)
        EPOCHS = 3
    """) + TAIL,
    "hyperband.py": COMMON + textwrap.dedent("""
        tuner = keras_tuner.Hyperband(build, objective="val_accuracy", max_epochs=3, factor=3, seed=7,
                                      directory="hb", project_name="pima")
        EPOCHS = 3
    """) + TAIL,
    "custom_run_trial.py": COMMON + textwrap.dedent("""
        class BatchSizeTuner(keras_tuner.RandomSearch):
            def run_trial(self, trial, *args, **kwargs):
                kwargs["batch_size"] = trial.hyperparameters.Choice("batch_size", [16, 64])
                return super().run_trial(trial, *args, **kwargs)

        tuner = BatchSizeTuner(build, objective="val_accuracy", max_trials=4, seed=7, project_name="custom")
        EPOCHS = 3
    """) + TAIL,
}


TUTORIAL_HEAD = textwrap.dedent("""
    import json, sys
    import keras
    import keras_tuner as kt
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data = pd.read_csv(sys.argv[1])
    MAX_TRIALS, EPOCHS = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else ({trials}, {epochs})
    X = data.drop("Outcome", axis=1)
    y = data["Outcome"]
    X_scaled = StandardScaler().fit_transform(X)
    X_train, X_test, y_train, y_test = train_test_split(X_scaled, y, test_size=0.2, random_state=42)
""")
TUTORIAL_BEST = textwrap.dedent("""
    best_hps = tuner.get_best_hyperparameters(num_trials=1)[0]
    best_model = tuner.get_best_models(num_models=1)[0]
    print("BEST " + json.dumps({"values": best_hps.values,
                                "accuracy": float(best_model.evaluate(X_test, y_test, verbose=0)[1])}), flush=True)
""")
TUTORIAL = {
    "pima_optimizer.py": TUTORIAL_HEAD.format(trials=5, epochs=5) + textwrap.dedent("""
        def build_model(hp):
            model = keras.Sequential()
            model.add(keras.Input(shape=(X_train.shape[1],)))
            model.add(keras.layers.Dense(32, activation="relu"))
            model.add(keras.layers.Dense(1, activation="sigmoid"))
            optimizer = hp.Choice("optimizer", ["adam", "sgd", "rmsprop", "adadelta"])
            model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
            return model

        tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=MAX_TRIALS,
                                directory="my_directory", project_name="optimizer_selection")
        tuner.search(X_train, y_train, epochs=EPOCHS, validation_data=(X_test, y_test))
    """) + TUTORIAL_BEST,
    "pima_units.py": TUTORIAL_HEAD.format(trials=5, epochs=10) + textwrap.dedent("""
        def build_model(hp):
            model = keras.Sequential()
            model.add(keras.Input(shape=(X_train.shape[1],)))
            model.add(keras.layers.Dense(hp.Int("units", min_value=8, max_value=128, step=8), activation="relu"))
            model.add(keras.layers.Dense(1, activation="sigmoid"))
            model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
            return model

        tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=MAX_TRIALS,
                                directory="my_directory", project_name="neuron_optimization")
        tuner.search(X_train, y_train, epochs=EPOCHS, validation_data=(X_test, y_test))
    """) + TUTORIAL_BEST + textwrap.dedent("""
        # the tutorial keeps training the best model (100 epochs from epoch 5; here 2 more epochs)
        best_model.fit(X_train, y_train, epochs=EPOCHS + 2, initial_epoch=EPOCHS,
                       validation_data=(X_test, y_test), verbose=0)
        print("EXTENDED " + json.dumps(float(best_model.evaluate(X_test, y_test, verbose=0)[1])), flush=True)
    """),
    # the tutorial gives no budget for its layers phase: 5 trials x 10 epochs, as `--budget tutorial`
    "pima_layers.py": TUTORIAL_HEAD.format(trials=5, epochs=10) + textwrap.dedent("""
        def build_model(hp):
            model = keras.Sequential()
            model.add(keras.Input(shape=(X_train.shape[1],)))
            for _ in range(hp.Int("num_layers", 1, 10, default=1)):
                model.add(keras.layers.Dense(72, activation="relu"))
            model.add(keras.layers.Dense(1, activation="sigmoid"))
            model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
            return model

        tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=MAX_TRIALS,
                                directory="my_directory", project_name="layers_optimization")
        tuner.search(X_train, y_train, epochs=EPOCHS, validation_data=(X_test, y_test))
    """) + TUTORIAL_BEST,
    "pima_comprehensive.py": TUTORIAL_HEAD.format(trials=20, epochs=10) + textwrap.dedent("""
        def build_model(hp):
            model = keras.Sequential()
            model.add(keras.Input(shape=(X_train.shape[1],)))
            for i in range(hp.Int("num_layers", 1, 10, default=1)):
                model.add(keras.layers.Dense(units=hp.Int(f"units_{i}", min_value=32, max_value=512, step=32),
                                             activation=hp.Choice(f"activation_{i}", ["relu", "tanh", "sigmoid"])))
                model.add(keras.layers.Dropout(hp.Float(f"dropout_{i}", 0.1, 0.9, step=0.1)))
            model.add(keras.layers.Dense(1, activation="sigmoid"))
            model.compile(optimizer=hp.Choice("optimizer", ["adam", "sgd", "rmsprop", "adadelta"]),
                          loss="binary_crossentropy", metrics=["accuracy"])
            return model

        tuner = kt.RandomSearch(build_model, objective="val_accuracy", max_trials=MAX_TRIALS,
                                directory="my_directory", project_name="comprehensive_tuning")
        tuner.search(X_train, y_train, epochs=EPOCHS, validation_data=(X_test, y_test))
    """) + TUTORIAL_BEST,
}
ALL = {**SCRIPTS, **TUTORIAL}


def validation_rows(name: str, csv: str) -> str:
    """Python code that sets `x_val, y_val` as script `name` validates on (for a scoring process)."""
    scale = name in TUTORIAL
    return textwrap.dedent(f"""
        import pandas as pd
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
        frame = pd.read_csv({csv!r})
        x = frame.drop(columns=["Outcome"]).to_numpy("float32"); y = frame["Outcome"].to_numpy("float32")
        x = StandardScaler().fit_transform(x) if {scale} else x
        _, x_val, _, y_val = train_test_split(x, y, test_size=0.2, random_state=42)
    """)
