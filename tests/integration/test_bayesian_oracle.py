"""tunecluster's Bayesian oracle (`tuning/bayesian_oracle.py`) and the chief that serves it:

- while a Bayesian suggestion is being computed (held open by the test), another worker's
  UpdateTrial, EndTrial, GetBestTrials, GetSpace, heartbeat and status calls are answered over real
  gRPC: nothing waits behind the suggestion, and the suggestion saw the running trial;
- four workers asking at once on a real chief process, in a small discrete space: every trial is
  distinct and the search ends with exactly max_trials COMPLETED;
- suggestions are computed in a child process that keeps its model, and a failing child falls
  back to the chief's own process."""

from __future__ import annotations

import threading

import keras_tuner as kt

from chief_process import ChiefProcess, RawWorker

from tunecluster.tuning.examples import comprehensive_space


def score(values: dict) -> float:
    return 0.8 - 0.01 * (values.get("num_layers", 1) - 3) ** 2 - 0.1 * abs(values.get("dropout_0", 0.5) - 0.3)


def test_nothing_waits_behind_a_suggestion(tmp_path):
    import keras_tuner  # noqa: F401 - the real package first, so the chief does not install its shim

    from tunecluster.cluster.chief import Chief
    from tunecluster.core.network import free_port
    from tunecluster.core.rundir import RunDir
    from tunecluster.cluster.auth import Security
    from tunecluster.tuning.spec import Experiment

    spec = Experiment.model_validate({"name": "nowait", "tuner": {
        "kind": "bayesian", "max_trials": 10, "seed": 1, "bayesian": {"num_initial_points": 2}}})
    chief = Chief(spec, RunDir(tmp_path), "127.0.0.1", free_port(), security=Security(token="t"))
    address = chief.start()
    try:
        a, b = RawWorker(address, "tuner0", "t"), RawWorker(address, "tuner1", "t")
        a.control.call("SetSpace", hyperparameters=comprehensive_space().get_config())
        for _ in range(2):  # the random initial points
            trial = a.create_trial()
            a.update_trial(trial.trial_id, 0.5)
            a.end_trial(trial)
        running = b.create_trial()  # a Gaussian-process suggestion, computed normally
        assert running.status == 1  # RUNNING

        oracle = chief.oracle
        original = oracle._compute
        entered, release, seen = threading.Event(), threading.Event(), {}

        def held_open(snapshot):
            seen["running"] = len(snapshot.x_running)
            entered.set()
            assert release.wait(60), "the test never released the suggestion"
            return original(snapshot)

        oracle._compute = held_open
        answer = {}
        asking = threading.Thread(target=lambda: answer.setdefault("trial", a.create_trial()))
        asking.start()
        try:
            assert entered.wait(30), "the suggestion never started"
            # while tuner0's suggestion is open, tuner1 reads, records and ends its trial
            b.update_trial(running.trial_id, 0.75)
            beat = b.control.call("Heartbeat", tuner_id="tuner1", state="running", trial=running.trial_id)
            assert beat["ok"] and "revoked" not in beat
            best = b.stub.GetBestTrials(b.protos.get_service().GetBestTrialsRequest(num_trials=1), timeout=10)
            assert len(best.trials) == 1
            b.stub.GetSpace(b.protos.get_service().GetSpaceRequest(), timeout=10)
            b.end_trial(running)
            assert b.control.call("Status")["counts"]["completed"] == 3
            assert asking.is_alive(), "the suggestion finished before the test released it"
        finally:
            release.set()
            asking.join(30)
        assert answer["trial"].status == 1 and answer["trial"].trial_id not in ("0", "1", running.trial_id)
        assert seen["running"] == 1  # tuner1's running trial counted in the suggestion
    finally:
        chief.stop()


SMALL = {"name": "nodup", "tuner": {"kind": "bayesian", "max_trials": 16, "seed": 3,
                                    "bayesian": {"num_initial_points": 3}},
         "cluster": {"workers": 4}}


def test_concurrent_workers_get_distinct_trials(tmp_path):
    from keras_tuner.src.engine import hyperparameters as hp_module
    from keras_tuner.src.engine import trial as trial_module

    hp = hp_module.HyperParameters()
    hp.Int("x", 0, 5)
    hp.Choice("y", ["a", "b", "c"])  # 18 combinations for 16 trials: duplicates are likely
    chief = ChiefProcess(tmp_path, SMALL, token="t").start()
    try:
        RawWorker(chief.address, "tuner0", "t").control.call("SetSpace", hyperparameters=hp.get_config())
        errors = []

        def work(tuner_id):
            worker = RawWorker(chief.address, tuner_id, "t")
            try:
                while True:
                    proto = worker.create_trial()
                    trial = trial_module.Trial.from_proto(proto)
                    if trial.status == "STOPPED":
                        return
                    if trial.status == "IDLE":
                        continue
                    values = trial.hyperparameters.values
                    worker.update_trial(trial.trial_id, values["x"] / 5 + (values["y"] == "b") * 0.3)
                    worker.end_trial(proto)
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(f"tuner{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors
        status = RawWorker(chief.address, "tuner0", "t").control.call("Status")
        assert status["counts"]["completed"] == 16
        import json

        from waiting import wait

        def written():  # the chief's state writer puts the trial files down within its period (~0.5-5 s)
            found = [json.loads(p.read_text()) for p in (chief.run / "kt" / "nodup").glob("trial_*/trial.json")]
            return found if sum(t["status"] == "COMPLETED" for t in found) == 16 else None

        trials = wait(written, 60, "the 16 trial files")
        combos = [(t["hyperparameters"]["values"]["x"], t["hyperparameters"]["values"]["y"]) for t in trials]
        assert len(combos) == 16 and len(set(combos)) == 16, combos
    finally:
        chief.stop()


def _small_search(oracle, trials: int):
    from keras_tuner.src.engine import trial as trial_module

    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    hp.Int("units", 8, 64, step=8)
    oracle.update_space(hp)
    made = []
    for _ in range(trials):
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        oracle.update_trial(trial.trial_id, {"score": -(values["x"] - 0.3) ** 2 - values["units"] / 640}, step=0)
        trial.status = trial_module.TrialStatus.COMPLETED
        oracle.end_trial(trial)
        made.append(trial)
    return made


def _bayesian(tmp_path, **kwargs):
    from tunecluster.tuning.bayesian_oracle import BayesianOptimizationOracle

    oracle = BayesianOptimizationOracle(objective=kt.Objective("score", "max"), max_trials=20,
                                        num_initial_points=3, seed=5, **kwargs)
    oracle._set_project_dir(str(tmp_path), "p")
    return oracle


def test_suggestions_are_computed_in_a_child_process_that_keeps_the_model(tmp_path):
    import os

    from tunecluster.tuning import gp_process

    oracle = _bayesian(tmp_path)
    trials = _small_search(oracle, 8)
    child = gp_process.shared()._process
    assert child is not None and child.poll() is None and child.pid != os.getpid()
    assert oracle.suggest_in_child
    assert oracle.last_timing["observations"] == 7  # the 8th suggestion saw the 7 completed
    assert len({tuple(sorted(t.hyperparameters.values.items())) for t in trials}) == 8  # no duplicate


def test_a_failing_child_falls_back_to_the_chiefs_process(tmp_path, monkeypatch, caplog):
    import subprocess
    import sys

    from tunecluster.tuning import gp_process

    broken = gp_process.SuggestionProcess()
    monkeypatch.setattr(broken, "_start", lambda: setattr(broken, "_process", subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read(1)"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)))
    monkeypatch.setattr(gp_process, "_shared", broken)
    oracle = _bayesian(tmp_path)
    with caplog.at_level("WARNING", logger="tunecluster.chief"):
        trials = _small_search(oracle, 6)
    assert not oracle.suggest_in_child
    assert "computing them in the chief's process" in caplog.text
    assert oracle.last_timing["observations"] == 5
    assert all(t.status == "COMPLETED" for t in trials)
