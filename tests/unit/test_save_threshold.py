"""The chief's `save_above` score (cluster/chief/save_threshold.py) on a real Keras Tuner random
oracle: always the k-th best completed trial's score as Keras Tuner's `get_best_trials` gives
it, read under the oracle's lock only when a trial ended since the last reading."""

from __future__ import annotations

import contextlib

import keras_tuner as kt
import pytest

from tunecluster.cluster.chief.save_threshold import SaveThreshold
from tunecluster.kt_compat.oracle_lock import oracle_lock
from tunecluster.tuning.spec import Experiment


def _spec(**fit):
    return Experiment.model_validate({"name": "t", "hypermodel": "m.py:build", "data": {"loader": "d.py:load"},
                                      "tuner": {"kind": "random", "max_trials": 50}, "fit": fit})


@pytest.fixture
def oracle(tmp_path):
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"), max_trials=50, seed=3)
    oracle._set_project_dir(str(tmp_path), "p")
    hp = kt.HyperParameters()
    hp.Float("x", 0, 1)
    oracle.update_space(hp)
    return oracle


def _end(oracle, score):
    trial = oracle.create_trial("w")
    oracle.update_trial(trial.trial_id, {"score": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def test_the_score_is_the_kth_best_and_is_read_again_only_after_an_end(oracle):
    holds = []

    @contextlib.contextmanager
    def counting_lock():
        holds.append(1)
        with oracle_lock(oracle):
            yield

    threshold = SaveThreshold(_spec(), oracle, counting_lock)
    assert threshold.score() is None  # fewer than 3 completed trials: every training writes
    for score in (0.5, 0.9, 0.7):
        _end(oracle, score)
    assert threshold.score() == pytest.approx(0.5)
    for _ in range(5):
        assert threshold.score() == pytest.approx(0.5)
    assert len(holds) == 2  # read once after the ends, then kept
    _end(oracle, 0.8)  # an end the chief did not refresh after (e.g. a stock worker's EndTrial)
    assert threshold.score() == pytest.approx(0.7)
    assert threshold.score() == pytest.approx(oracle.get_best_trials(3)[-1].score)
    assert len(holds) == 3
    _end(oracle, 0.95)
    with oracle_lock(oracle):
        assert threshold.refresh() == pytest.approx(0.8)  # as the chief does after each end
    assert threshold.score() == pytest.approx(0.8) and len(holds) == 3


def test_no_threshold_with_checkpoints_all(oracle):
    for score in (0.5, 0.9, 0.7):
        _end(oracle, score)
    assert SaveThreshold(_spec(checkpoints="all"), oracle, lambda: oracle_lock(oracle)).score() is None
