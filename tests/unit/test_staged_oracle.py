"""The staged search's oracle (`tuning/staged_oracle.py`) on a real Keras Tuner oracle state, no
process: random trials for the first stage, IDLE while any of them still runs, then Bayesian
suggestions whose Gaussian process is fitted on every trial of the first stage; and the spec's
`stages` written into `tuner`."""

from __future__ import annotations

import keras_tuner as kt
import pytest

from tunecluster.core.errors import UsageError
from tunecluster.kt_compat import oracle_state
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.spec import validate_spec
from tunecluster.tuning.staged_oracle import build_staged_oracle

STAGED = {"name": "staged", "hypermodel": "m:f",
          "stages": [{"kind": "random", "max_trials": 4}, {"kind": "bayesian", "max_trials": 3}]}


def _oracle(tmp_path):
    spec = Overrides().apply(validate_spec(STAGED))
    oracle = build_staged_oracle(spec)
    oracle.suggest_in_child = False  # the Gaussian process in this process (no child in the unit tier)
    oracle_state.set_project_dir(oracle, str(tmp_path), "staged")
    oracle.verbose = 0
    hp = kt.HyperParameters()
    hp.Int("units", 8, 128, step=8)
    hp.Choice("optimizer", ["adam", "sgd", "rmsprop"])
    oracle.update_space(hp)
    return oracle


def _end(oracle, trial, score):
    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def test_stages_set_the_tuner_and_refuse_contradicting_options():
    spec = Overrides().apply(validate_spec(STAGED))
    assert (spec.tuner.kind, spec.tuner.max_trials, spec.tuner.bayesian.num_initial_points) == ("bayesian", 7, 4)
    with pytest.raises(UsageError, match="--max-trials: the spec's stages set the tuner"):
        Overrides(max_trials=3).apply(validate_spec(STAGED))
    with pytest.raises(UsageError, match="stages: give two stages, kind random then kind bayesian"):
        validate_spec({"stages": [{"kind": "bayesian", "max_trials": 3}]})
    assert Overrides().apply(validate_spec({})).stages == []


def test_the_bayesian_stage_waits_for_and_starts_from_every_first_stage_trial(tmp_path):
    oracle = _oracle(tmp_path)
    first = [oracle.create_trial(f"tuner{i}") for i in range(4)]
    assert [t.status for t in first] == ["RUNNING"] * 4
    for trial, score in zip(first[:3], (0.6, 0.7, 0.65)):
        _end(oracle, trial, score)
    # one first-stage trial still runs: no Bayesian suggestion yet, and no fifth random trial
    assert oracle.create_trial("tuner0").status == "IDLE" and len(oracle.trials) == 4
    seen = []
    compute = oracle._compute
    oracle._compute = lambda snapshot: seen.append(snapshot) or compute(snapshot)
    _end(oracle, first[3], 0.75)
    second = oracle.create_trial("tuner0")
    assert second.status == "RUNNING" and second.trial_id == "4"
    assert len(seen) == 1 and len(seen[0].x_done) == 4  # the model saw all four first-stage trials
    assert sorted(seen[0].y_done) == sorted(-s for s in (0.6, 0.7, 0.65, 0.75))
    _end(oracle, second, 0.7)
    for tuner in ("tuner1", "tuner2"):
        _end(oracle, oracle.create_trial(tuner), 0.7)
    assert len(seen) == 3 and oracle.create_trial("tuner3").status == "STOPPED"
