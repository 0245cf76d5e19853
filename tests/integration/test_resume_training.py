"""Trainings that resume, on real searches (chief and worker processes, real tiny TensorFlow
trainings): a training taken back at epoch e - by SIGKILL, by SIGTERM, or by its lease expiring
while its worker is frozen - continues on the next worker from its checkpoint (epoch >= e), ends
with all its epochs in its curve - the uninterrupted training's curve, within float tolerance -
and its checkpoint is removed once its result is in. A long
epoch is checkpointed within: a training killed mid-epoch resumes from the weights and optimizer
state reached within it (in process: exactly those; on a real search: the epoch runs again)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import yaml

from curve_models import LOADER, MODEL
from waiting import read_json, wait

EPOCHS = 30


def _start(tmp_path, workers, lease_timeout=30.0, epochs=EPOCHS, checkpoint_seconds=0, pause=("EPOCH_PAUSE", "0.15")):
    (tmp_path / "data.py").write_text(LOADER)
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "resume", "hypermodel": "model.py:build", "data": {"loader": "data.py:load"},
        "tuner": {"kind": "grid", "max_trials": 1},
        "fit": {"checkpoint_seconds": checkpoint_seconds, "epochs": epochs, "batch_size": 32, "tensorboard": False},
        "confirm": {"enabled": False},
        "cluster": {"workers": workers, "tf_threads": 1, "heartbeat_interval": 0.2,
                    "lease_timeout": lease_timeout}}))
    return subprocess.Popen(
        [sys.executable, "-m", "tunecluster", "up", "-f", "spec.yaml", "--dir", "run"], cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", pause[0]: pause[1]},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _checkpointed(run, at_least):
    """The epochs the running training's checkpoint holds, once it holds `at_least`."""
    state = read_json(run / "checkpoints" / "0_0" / "state.json")
    return state.get("epochs") if (state.get("epochs") or 0) >= at_least else None


def _role_pid(run, tuner_id):
    roles = read_json(run / "cluster.json")["roles"]
    return next(r["pid"] for r in roles if r["name"] == f"worker-{tuner_id[len('tuner'):]}")


def _finish(launcher, run, epochs=EPOCHS):
    output, _ = launcher.communicate(timeout=400)
    assert launcher.returncode == 0, output[-3000:]
    row = read_json(run / "results.json")["trials"][0]
    assert row["status"] == "COMPLETED"
    execution = row["executions"][0]
    assert len(execution["curve"]) == epochs and all(execution["curve"])  # every epoch, once
    assert not (run / "checkpoints" / "0_0").exists()  # removed once the result was in
    return row, execution


@pytest.fixture(scope="module")
def uninterrupted_curve(tmp_path_factory):
    """The curve of the same search's training, never interrupted (the trainings' seeds are
    the same in every run of one spec)."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    launcher = _start(tmp_path, workers=1)
    try:
        return _finish(launcher, tmp_path / "run")[1]["curve"]
    finally:
        if launcher.poll() is None:
            launcher.kill()


def _same_curve(curve, expected):
    """Every epoch's metrics equal, within float tolerance."""
    assert len(curve) == len(expected)
    for epoch, (got, want) in enumerate(zip(curve, expected)):
        assert got.keys() == want.keys(), epoch
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-6), (epoch, name, got, want)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_or_terminated_worker_s_training_resumes_from_its_checkpoint(tmp_path, how, uninterrupted_curve):
    """... and, resumed at an epoch end, ends with the uninterrupted training's curve."""
    run = tmp_path / "run"
    launcher = _start(tmp_path, workers=1)
    try:
        wait(lambda: read_json(run / "progress.json").get("leases", {}).get("0#0"), 240, "the training to start")
        taken_at = wait(lambda: _checkpointed(run, 3), 120, "three checkpointed epochs")
        pid = _role_pid(run, "tuner0")
        os.kill(pid, getattr(signal, how))
        # the supervisor restarts the worker (same id); it takes its training back and resumes it
        row, execution = _finish(launcher, run)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert execution["resumed_from"] >= taken_at - 1, execution
    assert execution["resumed_from"] < EPOCHS
    log = (run / "logs" / "worker-0.log").read_text()
    assert f"resumes from its checkpoint after epoch {execution['resumed_from']}" in log
    if how == "SIGTERM":
        assert "stopped by SIGTERM" in log
    _same_curve(execution["curve"], uninterrupted_curve)


def test_a_training_whose_lease_expires_resumes_on_the_other_worker(tmp_path, uninterrupted_curve):
    run = tmp_path / "run"
    launcher = _start(tmp_path, workers=2, lease_timeout=3.0)
    frozen = None
    try:
        holder = wait(lambda: read_json(run / "progress.json").get("leases", {}).get("0#0"), 240, "the training")
        taken_at = wait(lambda: _checkpointed(run, 3), 120, "three checkpointed epochs")
        frozen = _role_pid(run, holder)
        os.kill(frozen, signal.SIGSTOP)  # no heartbeats: the lease expires, the other worker takes it
        other = wait(lambda: (lambda h: h if h not in (None, holder) else None)(
            read_json(run / "progress.json").get("leases", {}).get("0#0")), 60, "the other worker to take it")
        wait(lambda: (read_json(run / "progress.json").get("workers", {}).get(other, {}).get("epoch") or 0)
              > taken_at, 60, "the other worker to train past the checkpoint")
        os.kill(frozen, signal.SIGCONT)  # the frozen worker wakes up, hears its lease is gone
        frozen = None
        row, execution = _finish(launcher, run)
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        if launcher.poll() is None:
            launcher.kill()
    assert execution["worker"] == other and row["requeues"] == 1
    assert execution["resumed_from"] >= taken_at - 1, execution
    worker_log = (run / "logs" / f"worker-{other[len('tuner'):]}.log").read_text()
    assert "resumes from its checkpoint" in worker_log
    _same_curve(execution["curve"], uninterrupted_curve)  # (2 workers here: the same seed, the same curve)


def test_a_training_killed_within_a_long_epoch_resumes_from_within_it(tmp_path):
    """Epochs of ~3 s (29 batches, 0.1 s each), a checkpoint every 1 s: within the epochs."""
    run = tmp_path / "run"
    launcher = _start(tmp_path, workers=1, epochs=4, checkpoint_seconds=1.0, pause=("BATCH_PAUSE", "0.1"))
    try:
        wait(lambda: read_json(run / "progress.json").get("leases", {}).get("0#0"), 240, "the training to start")
        state = wait(lambda: (lambda s: s if (s.get("epochs") or 0) >= 1 and (s.get("within") or 0) > 0 else None)(
            read_json(run / "checkpoints" / "0_0" / "state.json")), 120, "a checkpoint within the second epoch")
        os.kill(_role_pid(run, "tuner0"), signal.SIGKILL)
        row, execution = _finish(launcher, run, epochs=4)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert execution["resumed_from"] >= state["epochs"], (execution, state)
    log = (run / "logs" / "worker-0.log").read_text()
    assert re.search(r"0#0 resumes from its checkpoint within epoch \d \(after \d+ batches; that epoch runs "
                     r"again in full\)", log), log[-3000:]


def test_a_checkpoint_within_an_epoch_holds_that_batch_s_weights_and_optimizer_state(tmp_path):
    """In process, a real tiny training (32 batches per epoch), checkpointed only within its second
    epoch, at its 8th batch (the clock is set back there), and killed at the 12th: the checkpoint
    restores exactly the weights and optimizer step of the 8th batch, and the first epoch's weights
    as the best so far (copied at the second epoch's start, the model holding mid-epoch weights);
    the training then runs its remaining epochs with the whole history."""
    import keras
    import keras_tuner
    import numpy as np

    from tunecluster.cluster.worker import resume
    from tunecluster.cluster.worker.callbacks import BestWeights

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(640, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")

    def build():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
        return model

    class Killed(BaseException):
        pass

    seen: dict = {}
    objective = keras_tuner.Objective("val_loss", "min")
    best = BestWeights(objective)
    folder = tmp_path / "checkpoints" / "0_0"
    checkpoint = resume.TrainingCheckpoint(folder, 3600.0, best)

    class Recorder(keras.callbacks.Callback):  # after the checkpoint: what each batch left
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            seen[(epoch, "end")] = self.model.get_weights()

        def on_train_batch_begin(self, batch, logs=None):
            if (self.epoch, batch) == (1, 7):
                checkpoint._last_write -= 7200  # an hour has passed: due at this batch's end

        def on_train_batch_end(self, batch, logs=None):
            seen[(self.epoch, batch)] = (self.model.get_weights(), int(self.model.optimizer.iterations))
            if (self.epoch, batch) == (1, 11):
                raise Killed()

    model = build()
    try:
        model.fit(x, y, validation_data=(x[:64], y[:64]), epochs=3, batch_size=20, verbose=0,
                  callbacks=[best, checkpoint, Recorder()])
    except Killed:
        pass
    state = json.loads((folder / "state.json").read_text())
    assert (state["epochs"], state["within"], len(state["history"]), state["best_saved"]) == (1, 8, 1, 0)
    assert sorted(p.name for p in folder.iterdir()) == ["best.weights.h5", "epoch_1_batch_8.weights.h5", "state.json"]
    weights, step = seen[(1, 7)]

    fresh, fresh_best = build(), BestWeights(objective)
    resumed, callback = resume.prepare(fresh, folder, fresh_best, 3, 3600.0)
    assert resumed == 1 and callback.resumed_within == 8
    assert int(fresh.optimizer.iterations) == step == 32 + 8
    for restored, expected in zip(fresh.get_weights(), weights):
        np.testing.assert_array_equal(restored, expected)
    assert fresh_best.best_index == 0 and not fresh_best.best_is_last  # the model holds mid-epoch weights
    for restored, expected in zip(fresh_best.weights, seen[(0, "end")]):
        np.testing.assert_array_equal(restored, expected)
    history = fresh.fit(x, y, validation_data=(x[:64], y[:64]), epochs=3, initial_epoch=resumed, batch_size=20,
                        verbose=0, callbacks=[fresh_best, callback])
    assert len(history.history["loss"]) == 2 and len(resume.history_of(callback, history).history["loss"]) == 3


def _dropout_training():
    """A real tiny training with Dropout, fed as the worker feeds it (`epoch_data.fit_inputs`)."""
    import keras
    import keras_tuner
    import numpy as np

    from tunecluster.cluster.worker import epoch_data
    from tunecluster.cluster.worker.callbacks import BestWeights

    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(300, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype("float32")
    objective = keras_tuner.Objective("val_loss", "min")

    def build():
        keras.utils.set_random_seed(11)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dropout(0.3), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
        return model

    def train(model, first, epochs, callbacks):
        return model.fit(**epoch_data.fit_inputs(x, y, 32, seed=7, first_epoch=first, epochs=epochs), verbose=0,
                         validation_data=(x[:60], y[:60]), validation_batch_size=32, callbacks=callbacks)

    return build, train, lambda: BestWeights(objective)


def test_a_training_resumed_at_an_epoch_end_trains_exactly_as_an_uninterrupted_one(tmp_path):
    """In process, real tiny trainings with Dropout and the worker's shuffled epochs: 6 epochs
    uninterrupted, against 3 epochs checkpointed at every epoch end, then a fresh model restored
    from that checkpoint (weights, optimizer state, random streams) for epochs 4 to 6: the same
    weights and the same metrics, epoch by epoch. Without the random streams in the checkpoint
    the resumed epochs differ (the comparison can fail)."""
    import numpy as np

    from tunecluster.cluster.worker import resume
    from tunecluster.kt_compat import random_streams

    build, train, new_best = _dropout_training()

    whole = build()
    best = new_best()
    uninterrupted = train(whole, 0, 6, [best]).history

    folder = tmp_path / "checkpoints" / "0_0"
    first, first_best = build(), new_best()
    train(first, 0, 3, [first_best, resume.TrainingCheckpoint(folder, 0.0, first_best)])
    state = json.loads((folder / "state.json").read_text())
    assert state["epochs"] == 3 and state["within"] == 0
    assert len(state["random_streams"]) == 1  # the Dropout layer's

    def resumed_run(without_streams=False):
        model, model_best = build(), new_best()
        if without_streams:
            saved = json.loads((folder / "state.json").read_text())
            (folder / "state.json").write_text(json.dumps({**saved, "random_streams": None}))
        resumed, callback = resume.prepare(model, folder, model_best, 6, 3600.0)
        assert resumed == 3
        history = train(model, resumed, 6, [model_best, callback])
        return model, resume.history_of(callback, history).history

    model, history = resumed_run()
    for restored, expected in zip(model.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(restored, expected, rtol=1e-6, atol=1e-7)
    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(history[name], uninterrupted[name], rtol=1e-6, atol=1e-7)
    assert random_streams.read(model) == random_streams.read(whole)

    # the checks above can fail: without the random streams the dropout masks start over
    (folder / "state.json").write_text(json.dumps(state))
    model, history = resumed_run(without_streams=True)
    assert not np.allclose(history["val_loss"][3:], uninterrupted["val_loss"][3:], rtol=1e-6, atol=1e-7)


def test_each_epoch_s_order_depends_only_on_the_seed_and_the_epoch():
    """`epoch_data.batches`: every row once per epoch, the last batch the remainder; epoch e's
    batches are the same when the stream starts at e; another epoch or seed, another order."""
    import numpy as np

    from tunecluster.cluster.worker import epoch_data

    x = np.arange(70, dtype="float32").reshape(35, 2)
    y = np.arange(35, dtype="float32")
    assert epoch_data.supported(x, y) and epoch_data.supported({"a": x}, y)
    assert not epoch_data.supported(x, y[:10]) and not epoch_data.supported([[1.0]], y)
    as_given = epoch_data.fit_inputs([[1.0]], y, 8, 5, 2, 4)  # not arrays: to `fit` as they are
    assert as_given == {"x": [[1.0]], "y": y, "batch_size": 8, "epochs": 4, "initial_epoch": 2}
    streamed = epoch_data.fit_inputs(x, y, 8, 5, 2, 4)
    assert (streamed["steps_per_epoch"], streamed["shuffle"], streamed["initial_epoch"]) == (5, False, 2)

    def epochs(first, last, seed=5):
        dataset, steps = epoch_data.batches(x, y, 8, seed, first, last)
        assert steps == 5
        batches = [b[1].numpy().astype(int).tolist() for b in dataset]
        return [sum(batches[i:i + steps], []) for i in range(0, len(batches), steps)], batches

    orders, batches = epochs(0, 4)
    assert [len(b) for b in batches[:5]] == [8, 8, 8, 8, 3] and len(batches) == 20
    assert all(sorted(order) == list(range(35)) for order in orders)
    assert len({tuple(order) for order in orders}) == 4
    assert epochs(2, 4)[0] == orders[2:]
    assert epochs(0, 1, seed=6)[0][0] != orders[0]
    np.testing.assert_array_equal(
        next(iter(epoch_data.batches(x, y, 8, 5, 0, 1)[0]))[0].numpy(), x[orders[0][:8]])
