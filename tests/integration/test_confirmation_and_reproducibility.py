"""Results you can believe, on real (tiny) runs: the test rows never reach `fit` or the oracle,
executions spread over two workers with their own seeds, the confirmation stage's K x R retrainings
(and a constructed case where they overturn the search's ranking), the warnings, and
reproducibility (same spec and seed, same trials and scores; same configuration and seed, same
score on whichever worker)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from tunecluster.tuning.examples import csv_path
from tunecluster.core.seeds import training_seed

SPY_LOADER = textwrap.dedent("""
    import numpy as np

    def load():
        # column 0 is the row id: train 0.., validation 5000.., test 10000..
        rng = np.random.default_rng(0)
        def rows(start, n):
            x0 = rng.normal(size=n).astype("float32")
            x = np.stack([np.arange(start, start + n, dtype="float32"), x0], axis=1)
            return x, (x0 > 0).astype("float32")
        x_train, y_train = rows(0, 120)
        x_val, y_val = rows(5000, 40)
        x_test, y_test = rows(10000, 40)
        return x_train, y_train, x_val, y_val, x_test, y_test
""")

SPY_MODEL = textwrap.dedent("""
    import json, os, time
    import keras

    def both_workers_training():
        '''Wait (at most 120 s) until each of the two workers has begun a training: the first
        trial's second execution then goes to the other worker whatever their start-up times (the
        chief hands out a running trial's pending execution first).'''
        path = os.environ["SPY_LOG"] + ".workers"
        with open(path, "a") as started:
            started.write(os.environ["KERASTUNER_TUNER_ID"] + "\\n")
        deadline = time.time() + 120
        while len(set(open(path).read().split())) < 2 and time.time() < deadline:
            time.sleep(0.05)

    class Spy(keras.Model):
        '''Records the row ids of everything handed to fit().'''
        def fit(self, x=None, y=None, validation_data=None, **kwargs):
            both_workers_training()
            # the worker hands array data over as a tf.data stream of batches (epoch_data.py)
            ids = (x[:, 0].tolist() if y is not None else
                   [float(v) for batch, _ in x for v in batch[:, 0].numpy()])
            with open(os.environ["SPY_LOG"], "a") as log:
                log.write(json.dumps({"fit": sorted(set(ids)),
                                      "validation": sorted(set(validation_data[0][:, 0].tolist()))}) + "\\n")
            return super().fit(x, y, validation_data=validation_data, **kwargs)

    def build(hp):
        inputs = keras.Input(shape=(2,))
        hidden = keras.layers.Dense(hp.Choice("units", [4, 8]), activation="relu")(inputs)
        model = Spy(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model
""")


@pytest.fixture(scope="module")
def spied_run(tmp_path_factory):
    from conftest import run_cli

    work = tmp_path_factory.mktemp("spied")
    (work / "loader.py").write_text(SPY_LOADER)
    (work / "model.py").write_text(SPY_MODEL)
    (work / "spec.yaml").write_text(yaml.safe_dump({
        "name": "spied", "hypermodel": "model.py:build", "data": {"loader": "loader.py:load"},
        "tuner": {"kind": "bayesian", "max_trials": 2, "executions_per_trial": 2, "seed": 3},
        "fit": {"epochs": 1, "batch_size": 16, "tensorboard": False},
        "confirm": {"top": 2, "repeats": 2},
        "cluster": {"workers": 2, "tf_threads": 1}}))
    result = run_cli("up", "-f", "spec.yaml", "--dir", "run", cwd=work, timeout=400,
                     env={"SPY_LOG": str(work / "spy.jsonl")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, work / "run", result


def test_the_test_rows_never_reach_fit_or_the_oracle(spied_run):
    work, run, _ = spied_run
    calls = [json.loads(line) for line in (work / "spy.jsonl").read_text().splitlines()]
    assert len(calls) == 2 * 2 + 2 * 2  # 2 trials x 2 executions, then 2 configurations x 2 retrainings
    for call in calls:
        assert call["fit"] == list(range(120))  # every training row, and those only
        assert call["validation"] and min(call["validation"]) >= 5000 and max(call["validation"]) < 10000
    for trial_json in (run / "kt" / "spied").glob("trial_*/trial.json"):
        names = set(json.loads(trial_json.read_text())["metrics"]["metrics"])
        assert names == {"loss", "accuracy", "val_loss", "val_accuracy"}, names
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    assert metrics["test"] is not None and metrics["rows"] == {"train": 120, "validation": 40, "test": 40}


def test_executions_are_spread_over_both_workers_with_their_own_seeds(spied_run):
    _, run, _ = spied_run
    document = json.loads((run / "results.json").read_text())
    assert document["executions_per_trial"] == 2
    executions = [e for t in document["trials"] for e in t["executions"]]
    assert len(executions) == 4 and all(e["state"] == "done" for e in executions)
    assert {e["worker"] for e in executions} == {"tuner0", "tuner1"}
    assert any(len({e["worker"] for e in t["executions"]}) == 2 for t in document["trials"])
    seeds = [e["seed"] for e in executions]
    assert len(set(seeds)) == 4
    for trial in document["trials"]:
        expected = [training_seed(3, trial["trial_id"], k) for k in range(2)]
        assert [e["seed"] for e in trial["executions"]] == expected
        best_epoch_mean = np.mean([e["score_best_epoch"] for e in trial["executions"]])
        assert trial["score"] == pytest.approx(best_epoch_mean)
        assert trial["score_best_epoch"] == pytest.approx(best_epoch_mean)
        assert trial["score_last_epoch"] is not None and trial["score_std"] is not None


def test_confirmation_retrains_top_k_r_times_on_validation_and_test(spied_run):
    _, run, result = spied_run
    work = json.loads((run / "work.json").read_text())
    confirm = [u for u in work["units"] if u["kind"] == "confirm"]
    assert len(confirm) == 2 * 2 and all(u["state"] == "done" for u in confirm)
    assert all(u["result"]["test"] is not None and u["result"]["validation"] for u in confirm)
    document = json.loads((run / "results.json").read_text())
    confirmed = [t for t in document["trials"] if t["confirmed"]]
    assert len(confirmed) == 2 and all(t["confirmed"]["runs"] == 2 for t in confirmed)
    assert all(t["confirmed"]["test_mean"] is not None for t in confirmed)
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    assert metrics["trial_id"] == document["best_trial"] == document["confirmation"]["ranking"][0]
    assert metrics["confirmed"]["runs"] == 2
    assert "confirmed" in result.stdout and "test" in result.stdout


def test_bayesian_with_too_few_trials_warns_that_it_is_random_search(spied_run):
    _, run, result = spied_run
    warnings = json.loads((run / "results.json").read_text())["warnings"]
    assert any("this search is random search" in w for w in warnings), warnings
    assert sum("this search is random search" in line for line in result.stdout.splitlines()) >= 1


GAMBLER_DATA = textwrap.dedent("""
    import numpy as np

    def load():
        rng = np.random.default_rng(1)
        def rows(n):
            x0 = rng.normal(size=n)
            x1 = x0 + rng.normal(scale=0.6, size=n)  # a noisy copy: about 80% right
            return np.stack([x0, x1], axis=1).astype("float32"), (x0 > 0).astype("float32")
        return (*rows(200), *rows(200))
""")

GAMBLER_MODEL = textwrap.dedent("""
    import numpy as np
    import keras

    def build(hp):
        '''Fixed weights, nothing learns: "gambler" is perfect or perfectly wrong by the seed's
        first draw, "steady" is right ~80% of the time whatever the seed, "dead" always says 0.'''
        kind = hp.Choice("kind", ["gambler", "steady", "dead"])
        draw = np.random.rand()  # after tunecluster seeded this training
        inputs = keras.Input(shape=(2,))
        layer = keras.layers.Dense(1, activation="sigmoid", trainable=False)
        model = keras.Model(inputs, layer(inputs))
        kernel = {"gambler": [[10.0 if draw < 0.5 else -10.0], [0.0]], "steady": [[0.0], [10.0]],
                  "dead": [[0.0], [0.0]]}[kind]
        layer.set_weights([np.array(kernel, "float32"), np.array([-10.0 if kind == "dead" else 0.0], "float32")])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy",
                      metrics=["accuracy"])
        return model
""")


def _gambler_seed() -> int:
    """An experiment seed whose search training of trial 0 wins and some retraining loses."""
    for seed in range(1, 500):
        wins = np.random.RandomState(training_seed(seed, "0", 0)).rand() < 0.5
        loses = any(np.random.RandomState(training_seed(seed, "0", r, "confirm")).rand() >= 0.5 for r in range(3))
        if wins and loses:
            return seed
    raise AssertionError("no seed found")


def test_confirmation_overturns_a_lucky_configuration_and_flags_degenerate_ones(tmp_path, cli):
    seed = _gambler_seed()
    (tmp_path / "data.py").write_text(GAMBLER_DATA)
    (tmp_path / "model.py").write_text(GAMBLER_MODEL)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "gambler", "hypermodel": "model.py:build", "data": {"loader": "data.py:load"},
        "tuner": {"kind": "grid", "max_trials": 3, "seed": seed},
        "fit": {"epochs": 1, "batch_size": 64, "tensorboard": False},
        "confirm": {"top": 2, "repeats": 3}, "cluster": {"workers": 2, "tf_threads": 1}}))
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {t["hyperparameters"]["kind"]: t for t in document["trials"]}
    assert rows["gambler"]["trial_id"] == "0"
    # the search alone crowns the lucky configuration ...
    assert rows["gambler"]["score"] == 1.0 and 0.7 < rows["steady"]["score"] < 0.95
    assert document["search_best_trial"] == rows["gambler"]["trial_id"]
    # ... its K x R retrainings with fresh seeds do not
    assert rows["gambler"]["confirmed"]["runs"] == 3 and rows["steady"]["confirmed"]["runs"] == 3
    assert rows["gambler"]["confirmed"]["mean"] < rows["steady"]["confirmed"]["mean"]
    assert rows["steady"]["confirmed"]["std"] == 0.0
    assert document["best_trial"] == rows["steady"]["trial_id"]
    assert document["confirmation"]["ranking"][0] == rows["steady"]["trial_id"]
    hps = json.loads((tmp_path / "run" / "best" / "hyperparameters.json").read_text())
    assert hps == {"kind": "steady"}
    # the one-class model is flagged; the others are not
    assert rows["dead"]["degenerate"] is True and rows["dead"]["score"] == pytest.approx(
        rows["dead"]["executions"][0]["score_best_epoch"])
    assert rows["gambler"]["degenerate"] is False and rows["steady"]["degenerate"] is False
    warnings = document["warnings"]
    assert any("predict a single class" in w for w in warnings)
    g, st = rows["gambler"]["confirmed"], rows["steady"]["confirmed"]
    overlap = abs(g["mean"] - st["mean"]) <= g["std"] + st["std"]
    assert any("not distinguishable" in w for w in warnings) == overlap
    assert document["confirmation"]["overlap"] == overlap
    assert not any("random search" in w or "grid search over" in w for w in warnings)
    assert "degenerate" in result.stdout


def _repro_spec(tmp_path: Path, workers: int) -> Path:
    path = tmp_path / f"spec{workers}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "repro", "hypermodel": "tunecluster.tuning.examples.pima:build_optimizer",
        "data": {"csv": str(csv_path())}, "tuner": {"kind": "random", "max_trials": 3, "seed": 11},
        "fit": {"epochs": 2, "tensorboard": False}, "confirm": {"enabled": False},
        "cluster": {"workers": workers, "tf_threads": 1}}))
    return path


def _trials(run: Path) -> dict:
    document = json.loads((run / "results.json").read_text())
    return {t["trial_id"]: (t["hyperparameters"], t["score"], t["score_last_epoch"]) for t in document["trials"]}


def test_same_spec_and_seed_reproduce_trials_and_scores_on_one_or_two_workers(tmp_path, cli):
    runs = {}
    for name, workers in (("one-a", 1), ("one-b", 1), ("two", 2)):
        spec = _repro_spec(tmp_path, workers)
        result = cli("up", "-f", str(spec), "--dir", name, cwd=tmp_path, timeout=400)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs[name] = _trials(tmp_path / name)
    assert len(runs["one-a"]) == 3
    # one worker, twice: the same trials in the same order with the same scores
    assert list(runs["one-a"]) == list(runs["one-b"])
    for trial_id, (hps, score, last) in runs["one-a"].items():
        other = runs["one-b"][trial_id]
        assert other[0] == hps and other[1] == pytest.approx(score, abs=1e-6) and other[2] == pytest.approx(last, abs=1e-6)
    # two workers: each configuration and seed scores the same, whichever worker ran it
    document = json.loads((tmp_path / "two" / "results.json").read_text())
    assert len({t["worker"] for t in document["trials"]}) == 2
    for trial_id, (hps, score, last) in runs["one-a"].items():
        other = runs["two"][trial_id]
        assert other[0] == hps and other[1] == pytest.approx(score, abs=1e-6) and other[2] == pytest.approx(last, abs=1e-6)
