"""A training that fails because the shared run folder's filesystem broke (the Kubernetes bed's
node loss: `ConnectionAbortedError [Errno 103] Unable to synchronously create file '/shared/kt/...'`)
is not the trial's failure: the worker gives the trial back and exits 74, the local backend
restarts it, and the search ends with every trial COMPLETED once. The same holds for Keras Tuner's
own workers running an unmodified script (`up --script`)."""

from __future__ import annotations

import json
import re
import textwrap

import yaml

from tunecluster.tuning.examples import csv_path

# The worker builds once to learn the space; the next build (the first trial's) raises the error a
# dead FUSE mount gives h5py, naming a path in the run folder (as the real one does); every other
# build is a normal model.
MODEL = textwrap.dedent("""
    import errno
    import itertools
    import os

    import keras

    def build(hp):
        units = hp.Int("units", 4, 32, step=4)
        for count in itertools.count(1):
            try:
                os.close(os.open(os.path.join(os.path.dirname(__file__), f"build-{count}"), os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                continue
        if count == 2:
            path = os.path.join(os.environ["TUNECLUSTER_RUN_DIR"], "kt", "lost", "trial_0", "execution_0.weights.h5")
            raise OSError(errno.ECONNABORTED, f"Unable to synchronously create file (unable to open file: "
                                              f"name = '{path}', errno = 103)")
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(units, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
        return model
""")


def test_a_broken_shared_folder_gives_the_trial_back_and_restarts_the_worker(tmp_path, cli):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "lost", "hypermodel": "model.py:build",
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"max_trials": 2, "seed": 3}, "fit": {"epochs": 1}, "confirm": {"enabled": False},
        "cluster": {"workers": 1, "max_restarts": 1}}))
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (tmp_path / "build-2").exists()
    assert "worker-0 exited with code 74; restarting it with the same id (1/1)" in output

    run = tmp_path / "run"
    document = json.loads((run / "results.json").read_text())
    assert [t["status"] for t in document["trials"]] == ["COMPLETED", "COMPLETED"]
    assert [t["requeues"] for t in document["trials"]] == [1, 0]
    worker_log = (run / "logs" / "worker-0.log").read_text()
    assert re.search(r"tuner0: the shared run folder is unreachable \(ConnectionAbortedError \[Errno 103\] "
                     r"Software caused connection abort on .*run\); giving the trial back", worker_log), worker_log[-3000:]
    assert "gave trial 0 (execution 0) back to the chief" in worker_log
    assert "failed:" not in worker_log
    chief_log = (run / "logs" / "chief.log").read_text()
    assert "tuner0 gave it back (shared folder unreachable)" in chief_log, chief_log[-3000:]


# An unmodified Keras Tuner script whose worker (never the chief) meets the same error at its
# second model build, which is inside a trial whether or not Keras Tuner built once to learn the space.
SCRIPT = textwrap.dedent("""
    import errno, itertools, os, sys
    import keras, keras_tuner, pandas as pd

    frame = pd.read_csv(sys.argv[1])
    x = frame.drop(columns=["Outcome"]).to_numpy("float32")[:200]
    y = frame["Outcome"].to_numpy("float32")[:200]

    def build(hp):
        if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
            for count in itertools.count(1):
                try:
                    os.close(os.open(f"worker-build-{count}", os.O_CREAT | os.O_EXCL))
                    break
                except FileExistsError:
                    continue
            if count == 2:
                path = os.path.join(os.environ["TUNECLUSTER_RUN_DIR"], "kt", "lost", "trial_1", "checkpoint.weights.h5")
                raise OSError(errno.ECONNABORTED, f"Unable to synchronously create file (unable to open file: "
                                                  f"name = '{path}', errno = 103)")
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 32, step=4), activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
        return model

    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=3, seed=3, project_name="lost")
    tuner.search(x, y, validation_split=0.25, epochs=1, verbose=0)
""")


def test_an_unmodified_script_worker_gives_the_trial_back_too(tmp_path, cli):
    (tmp_path / "search.py").write_text(SCRIPT)
    result = cli("up", "--script", "search.py", "--workers", "1", "--dir", "run", "--", str(csv_path()),
                 cwd=tmp_path, timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert (tmp_path / "worker-build-2").exists()
    assert re.search(r"worker-0 exited with code 74; restarting it with the same id \(1/\d+\)", output), output[-4000:]

    run = tmp_path / "run"
    document = json.loads((run / "results.json").read_text())
    assert sorted(t["status"] for t in document["trials"]) == ["COMPLETED"] * 3, document["trials"]
    assert sorted(t["requeues"] for t in document["trials"]) == [0, 0, 1]
    worker_log = (run / "logs" / "worker-0.log").read_text()
    assert re.search(r"tuner0: the shared run folder is unreachable \(ConnectionAbortedError \[Errno 103\] "
                     r"Software caused connection abort on .*run\); giving the trial back", worker_log), worker_log[-3000:]
    assert "gave trial" in worker_log and "back to the chief" in worker_log
    chief_log = (run / "logs" / "chief.log").read_text()
    assert "tuner0 gave it back (shared folder unreachable)" in chief_log, chief_log[-3000:]
