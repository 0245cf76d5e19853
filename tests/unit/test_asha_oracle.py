"""ASHA's promotion rule on a constructed set of trial results (the oracle alone, no training;
tests/integration/test_asha_search.py runs it with real trainings and a chief restart)."""

from __future__ import annotations

import keras_tuner as kt
import pytest

from tunecluster.tuning.asha_oracle import AshaOracle, rung_epochs
from tunecluster.tuning.spec import validate_spec
from tunecluster.core.errors import UsageError


def _oracle(tmp_path, max_trials=9):
    oracle = AshaOracle(objective=kt.Objective("score", "max"), max_trials=max_trials, min_epochs=1,
                        max_epochs=9, reduction_factor=3, seed=1)
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle.update_space(hp)
    oracle._set_project_dir(str(tmp_path), "asha")
    return oracle


def _finish(oracle, trial, score):
    oracle.update_trial(trial.trial_id, {"score": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def test_rungs():
    assert rung_epochs(1, 9, 3) == [1, 3, 9]
    assert rung_epochs(2, 20, 3) == [2, 6, 18, 20]
    assert rung_epochs(5, 5, 2) == [5]


def test_promotions_follow_the_rule_in_a_known_order(tmp_path):
    oracle = _oracle(tmp_path)
    # bottom-rung scores of the configurations, in the order they finish
    scores = [0.3, 0.9, 0.5, 0.4, 0.8, 0.2, 0.6, 0.7, 0.1]
    order = []  # (trial id, rung epochs, parent) as handed out
    config_scores = iter(scores)
    results = {}

    def run_next():
        trial = oracle.create_trial("w")
        if trial.status != "RUNNING":
            return trial.status
        values = trial.hyperparameters.values
        parent = values.get("tuner/trial_id")
        order.append((trial.trial_id, values["tuner/epochs"], parent))
        # a promoted configuration scores its parent's score + 0.05 per rung
        results[trial.trial_id] = score = results[parent] + 0.05 if parent else next(config_scores)
        _finish(oracle, trial, score)
        return "RUNNING"

    while run_next() == "RUNNING":
        assert len(order) < 30
    bottom = [t for t, epochs, parent in order if parent is None]
    assert len(bottom) == 9
    # after 3 bottom results (0.3, 0.9, 0.5) the best (0.9, the second) is promoted to rung 3
    assert order[3] == (order[3][0], 3, bottom[1])
    promotions = [(epochs, parent) for _, epochs, parent in order if parent is not None]
    # rung 1 -> 3: the top third of the 9 bottom results: 0.9, 0.8, 0.7 (each as soon as it is in the top third)
    assert [p for e, p in promotions if e == 3] == [bottom[1], bottom[4], bottom[7]]
    # rung 3 -> 9: the best of the three rung-3 trials (the 0.9 line)
    rung3 = {t: p for t, e, p in order if e == 3}
    top = [p for e, p in promotions if e == 9]
    assert len(top) == 1 and rung3[top[0]] == bottom[1]
    assert len(order) == 9 + 3 + 1


def test_idle_while_a_trial_runs_and_nothing_is_promotable(tmp_path):
    oracle = _oracle(tmp_path, max_trials=1)
    first = oracle.create_trial("a")
    assert first.status == "RUNNING"
    assert oracle.create_trial("b").status == "IDLE"
    _finish(oracle, first, 0.5)
    assert oracle.create_trial("b").status == "STOPPED"


@pytest.mark.parametrize("raw, message", [
    ({"kind": "asha", "asha": {"reduction_factor": 1}}, "tuner.asha.reduction_factor"),
    ({"kind": "asha", "asha": {"min_epochs": 10, "max_epochs": 3}}, "min_epochs (10) must not exceed max_epochs (3)"),
    ({"kind": "asha", "early_stopping": {"kind": "median"}}, "early_stopping is for random, grid and bayesian"),
])
def test_bad_asha_settings_are_one_line(raw, message):
    with pytest.raises(UsageError) as info:
        validate_spec({"tuner": raw})
    assert message in str(info.value) and "\n" not in str(info.value)
