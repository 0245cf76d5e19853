"""An unmodified Keras Tuner script, given only Keras Tuner's three variables, works as a worker
against a tunecluster chief started with TUNECLUSTER_INSECURE=1 (`--insecure`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import yaml

from tunecluster.core.network import free_port
from tunecluster.tuning.examples import csv_path

STOCK_SCRIPT = textwrap.dedent("""
    import sys
    import keras, keras_tuner, pandas as pd
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(sys.argv[1])
    x = frame.drop(columns=["Outcome"]).to_numpy("float32"); y = frame["Outcome"].to_numpy("float32")
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=42)

    def build(hp):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=hp.Choice("optimizer", ["adam", "sgd", "rmsprop", "adadelta"]),
                      loss="binary_crossentropy", metrics=["accuracy"])
        return model

    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=3,
                                     directory=sys.argv[2], project_name="stock")
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=1, verbose=0)
    print("STOCK WORKER DONE")
""")


def test_unmodified_keras_tuner_worker_joins_a_tunecluster_chief(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    spec = run / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "stock", "tuner": {"max_trials": 3, "seed": 3},
                                    "cluster": {"workers": 1}}))
    (tmp_path / "stock_worker.py").write_text(STOCK_SCRIPT)
    port = free_port()
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERASTUNER_ORACLE_PORT": str(port)}
    chief = subprocess.Popen(
        [sys.executable, "-m", "tunecluster", "chief"],
        env={**base, "KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1",
             "TUNECLUSTER_INSECURE": "1", "TUNECLUSTER_SPEC": str(spec), "TUNECLUSTER_RUN_DIR": str(run)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        worker = subprocess.run(
            [sys.executable, str(tmp_path / "stock_worker.py"), str(csv_path()), str(run / "kt")],
            env={**base, "KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "127.0.0.1"},
            capture_output=True, text=True, timeout=300)
        assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-3000:]
        assert "STOCK WORKER DONE" in worker.stdout
        chief_out, _ = chief.communicate(timeout=30)  # the chief exits on its own, promptly
        assert chief.returncode == 0, chief_out
    finally:
        if chief.poll() is None:
            chief.kill()
    document = json.loads((run / "results.json").read_text())
    assert document["finished"] is True
    assert [t["status"] for t in document["trials"]] == ["COMPLETED"] * 3
    assert {t["worker"] for t in document["trials"]} == {"tuner0"}
    # after the first trial the chief knows the space and samples it
    assert all("optimizer" in t["hyperparameters"] for t in document["trials"][1:])
