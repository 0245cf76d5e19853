"""The pure logic behind trustworthy scores (no TensorFlow, no processes): the work board, the
per-training seeds, aggregation of executions, the confirmed ranking and its overlap note, the start
warnings and the one-class check. The real runs of tests/integration/test_confirmation_and_reproducibility.py cover the same
logic end to end."""

from __future__ import annotations

import math

import pytest

from tunecluster.cluster.work import PENDING, Board
from tunecluster.tuning import scoring
from tunecluster.tuning.search_warnings import count_configurations, start_warnings
from tunecluster.core.seeds import training_seed
from tunecluster.tuning.spec import validate_spec


def test_seeds_differ_per_trial_index_stage_and_never_shift_with_the_experiment_seed():
    seeds = {training_seed(s, str(t), k, stage) for s in (1, 2, 3) for t in range(20) for k in range(3)
             for stage in ("search", "confirm")}
    assert len(seeds) == 3 * 20 * 3 * 2
    # Keras Tuner's seed+1 gives seed 2's trial 0 the values of seed 1's trial 1; here they differ
    assert training_seed(2, "0", 0) != training_seed(1, "1", 0)
    assert training_seed(1, "0", 0) == training_seed(1, "0", 0)


def test_board_hands_executions_out_in_order_and_takes_lost_ones_back_first():
    board = Board(experiment_seed=1, executions=3)
    board.add_trial("0")
    first = board.take("tuner0")
    second = board.take("tuner1")
    assert (first.key, second.key) == ("0#0", "0#1") and first.seed != second.seed
    board.add_trial("1")
    assert board.give_back("0#1").state == PENDING
    assert board.take("tuner1").key == "0#1"  # the lost one first
    assert board.take("tuner0").key == "0#2"
    for key in ("0#0", "0#1", "0#2"):
        board.finish(key, {"best": {"val_accuracy": 0.5}})
    assert board.trial_done("0") and not board.trial_done("1")
    assert [u.state for u in board.of_trial("1")] == [PENDING] * 3
    restored = Board.from_dict(board.to_dict(), 1, 3)
    assert restored.units.keys() == board.units.keys() and restored.order == board.order


def test_board_indexes_the_units_each_worker_runs_through_every_change():
    board = Board(experiment_seed=1, executions=2)
    board.add_trial("0")
    board.add_trial("1")
    board.add_trial("2")
    first, second, third = board.take("w1"), board.take("w1"), board.take("w2")
    assert {u.key for u in board.running_for("w1")} == {first.key, second.key}
    board.give_back(first.key)  # back to the queue: w1 no longer runs it
    assert [u.key for u in board.running_for("w1")] == [second.key]
    assert board.take("w2").key == first.key  # the same unit, now w2's
    assert {u.key for u in board.running_for("w2")} == {first.key, third.key}
    board.finish(second.key, {"metrics": {}})
    board.fail(third.key, "boom")
    assert board.running_for("w1") == [] and [u.key for u in board.running_for("w2")] == [first.key]
    board.drop_trial(first.trial_id)
    assert board.running_for("w2") == []
    restored = Board.from_dict({"units": [dict(vars(board.take("w3")))]}, 1, 2)  # a restarted chief's board
    assert len(restored.running_for("w3")) == 1 and restored.running_for("nobody") == []


def test_executions_average_at_the_chosen_epoch():
    results = [{"best": {"val_accuracy": 0.8, "val_loss": 0.4}, "best_epoch": 2,
                "last": {"val_accuracy": 0.7, "val_loss": 0.5}, "last_epoch": 4, "degenerate": False},
               {"best": {"val_accuracy": 0.6, "val_loss": 0.6}, "best_epoch": 4,
                "last": {"val_accuracy": 0.6, "val_loss": 0.6}, "last_epoch": 4, "degenerate": False}]
    best = scoring.aggregate_executions(results, "val_accuracy", "best_epoch", "max")
    assert best["metrics"]["val_accuracy"] == pytest.approx(0.7) and best["step"] == 3
    assert best["score_last_epoch"] == pytest.approx(0.65) and best["best_execution"] == 0
    assert best["score_std"] == pytest.approx(math.sqrt(0.02)) and best["degenerate"] is False
    last = scoring.aggregate_executions(results, "val_accuracy", "last_epoch", "max")
    assert last["metrics"]["val_accuracy"] == pytest.approx(0.65) and last["step"] == 4


def _run(index, score, test=None):
    return {"index": index, "seed": index, "worker": "tuner0",
            "result": {"best": {"val_accuracy": score}, "test": {"accuracy": test} if test else None,
                       "weights": f"w{index}"}}


def test_confirmed_ranking_and_overlap():
    runs = {"a": [_run(0, 0.9), _run(1, 0.5), _run(2, 0.7)], "b": [_run(0, 0.75), _run(1, 0.76), _run(2, 0.74)]}
    ranked = scoring.rank_confirmed(runs, "val_accuracy", "best_epoch", "max")
    assert [r["trial_id"] for r in ranked] == ["b", "a"]
    assert ranked[1]["best_run"]["index"] == 0 and ranked[1]["best_run"]["weights"] == "w0"
    assert scoring.intervals_overlap(ranked) is True  # a's 0.70 ± 0.20 covers b's 0.75
    apart = scoring.rank_confirmed({"a": [_run(0, 0.9), _run(1, 0.91)], "b": [_run(0, 0.6), _run(1, 0.61)]},
                                   "val_accuracy", "best_epoch", "max")
    assert scoring.intervals_overlap(apart) is False
    assert scoring.intervals_overlap(apart[:1]) is False



def _space(*hps):
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for kind, name, kwargs in hps:
        getattr(hp, kind)(name, **kwargs)
    return hp.space


def test_start_warnings_fire_only_in_their_cases():
    space5 = _space(*[("Choice", f"c{i}", {"values": [1, 2]}) for i in range(5)])
    bayes = validate_spec({"tuner": {"kind": "bayesian", "max_trials": 15}})
    assert any("random search" in w for w in start_warnings(bayes, space5))  # 3 x 5 = 15 >= 15
    roomy = validate_spec({"tuner": {"kind": "bayesian", "max_trials": 16}})
    assert start_warnings(roomy, space5) == []
    explicit = validate_spec({"tuner": {"kind": "bayesian", "max_trials": 15, "bayesian": {"num_initial_points": 4}}})
    assert start_warnings(explicit, space5) == []
    big = _space(("Int", "units", {"min_value": 8, "max_value": 512, "step": 8}),
                 ("Int", "layers", {"min_value": 1, "max_value": 10}),
                 ("Choice", "opt", {"values": ["a", "b", "c", "d"]}))
    assert count_configurations(big) == 64 * 10 * 4
    grid = validate_spec({"tuner": {"kind": "grid", "max_trials": 20}})
    assert any("grid search over 2,560" in w for w in start_warnings(grid, big))
    assert start_warnings(validate_spec({"tuner": {"kind": "grid", "max_trials": 26}}), big) == []
    assert start_warnings(validate_spec({"tuner": {"kind": "random", "max_trials": 2}}), big) == []
    floats = _space(("Float", "lr", {"min_value": 0.001, "max_value": 0.1}))
    assert math.isinf(count_configurations(floats))


def test_one_class_predictions_are_recognised():
    import keras
    import numpy as np

    from tunecluster.cluster.worker.tuner import collapsed_predictions

    x = np.linspace(-1, 1, 50, dtype="float32").reshape(-1, 1)
    y = (x[:, 0] > 0.2).astype("float32")
    inputs = keras.Input(shape=(1,))
    layer = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.array([[0.0]], "float32"), np.array([-5.0], "float32")])
    degenerate, majority = collapsed_predictions(model, x, y, 32)
    assert degenerate is True and majority == pytest.approx(1 - y.mean())
    layer.set_weights([np.array([[10.0]], "float32"), np.array([0.0], "float32")])
    assert collapsed_predictions(model, x, y, 32)[0] is False
    assert collapsed_predictions(model, x, x[:, 0] * 3.0, 32) == (None, None)  # not a 0/1 label


def test_accuracy_that_matches_no_class_skips_the_forward_pass():
    """Keras' validation accuracy proves a model is not one-class when it equals no class's share;
    then the predictions are not computed. An accuracy that equals a class's share (or no
    accuracy) still looks at the predictions, so the answer is the same either way."""
    import keras
    import numpy as np

    from tunecluster.cluster.worker.tuner import collapsed_predictions

    x = np.linspace(-1, 1, 50, dtype="float32").reshape(-1, 1)
    y = (x[:, 0] > 0.2).astype("float32")  # 20 of class 1, 30 of class 0
    inputs = keras.Input(shape=(1,))
    layer = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.array([[0.0]], "float32"), np.array([-5.0], "float32")])  # always class 0
    calls = []
    original_call = model.call
    model.call = lambda *a, **k: calls.append(1) or original_call(*a, **k)
    # an accuracy that matches no class's count: trusted, no forward pass (here the logs are made up
    # to prove the pass is skipped: the real model is one-class)
    assert collapsed_predictions(model, x, y, 32, logs={"val_accuracy": 0.9}) == (False, pytest.approx(0.6))
    assert calls == []
    # 30/50 is class 0's share: the predictions decide (and find the one class)
    assert collapsed_predictions(model, x, y, 32, logs={"val_accuracy": 0.6})[0] is True
    assert calls
    calls.clear()
    assert collapsed_predictions(model, x, y, 32, logs={"val_loss": 0.3})[0] is True  # no accuracy
    assert calls
    # one-hot labels and a softmax output: class counts 10/25/15
    labels = np.eye(3, dtype="float32")[np.repeat([0, 1, 2], [10, 25, 15])]
    dense = keras.layers.Dense(3, activation="softmax")
    soft = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.zeros((1, 3), "float32"), np.array([0.0, 3.0, 0.0], "float32")])  # always class 1
    soft_call = soft.call
    soft.call = lambda *a, **k: calls.append(1) or soft_call(*a, **k)
    calls.clear()
    assert collapsed_predictions(soft, x, labels, 32, logs={"val_categorical_accuracy": 0.42}) == (False, 0.5)
    assert calls == []
    assert collapsed_predictions(soft, x, labels, 32, logs={"val_accuracy": 0.5}) == (True, 0.5)  # 25/50
    assert calls
