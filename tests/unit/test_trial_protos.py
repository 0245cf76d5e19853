"""The chief's cached trial protos are Keras Tuner's, byte for byte, and an EndTrial that carries
new hyperparameters (registered while the worker built the model) is parsed, not reused."""

from __future__ import annotations

import keras_tuner as kt
from keras_tuner.src.engine import trial as trial_module

from tunecluster.kt_compat.trial_protos import TrialProtos
from tunecluster.tuning.examples import comprehensive_space


def _trial(trial_id: str = "07") -> trial_module.Trial:
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=50, seed=3)
    oracle.update_space(comprehensive_space())
    hps = oracle.hyperparameters.copy()
    hps.values = oracle._random_values()
    trial = trial_module.Trial(hps, trial_id=trial_id, status="RUNNING")
    trial.metrics.register("val_accuracy", direction="max")
    trial.metrics.update("val_accuracy", 0.71, step=1)
    return trial


def test_to_proto_is_keras_tuners_and_follows_changes():
    protos, trial = TrialProtos(), _trial()
    for _ in range(2):  # built, then from the cache
        assert protos.to_proto(trial).SerializeToString(deterministic=True) == \
            trial.to_proto().SerializeToString(deterministic=True)
    trial.status, trial.score, trial.best_step = "COMPLETED", 0.71, 1
    trial.hyperparameters.values["extra"] = 3  # a value added in place: rebuilt
    assert protos.to_proto(trial).SerializeToString(deterministic=True) == \
        trial.to_proto().SerializeToString(deterministic=True)


def _unordered(state: dict) -> dict:
    """A trial's state with its hyperparameters as sets of names and types: the proto groups them
    by type (the trial keeps its declaration order) and loses an Int's unset default."""
    hps = state.pop("hyperparameters")
    state["space"] = sorted((hp["class_name"], hp["config"]["name"]) for hp in hps["space"])
    state["values"] = sorted(hps["values"].items())
    return state


def test_from_proto_reuses_the_trials_hyperparameters_only_when_they_are_the_same():
    protos, trial = TrialProtos(), _trial()
    sent = protos.to_proto(trial)
    back = trial_module.Trial.from_proto(sent)  # what a Keras Tuner worker holds
    back.status = "COMPLETED"
    received = protos.from_proto(back.to_proto(), current=trial)
    assert received.hyperparameters is trial.hyperparameters
    expected = trial_module.Trial.from_proto(back.to_proto())
    assert _unordered(received.get_state()) == _unordered(expected.get_state())

    back.hyperparameters.Int("units_extra", 1, 8)  # the worker's build registered one more
    received = protos.from_proto(back.to_proto(), current=trial)
    assert received.hyperparameters is not trial.hyperparameters
    assert "units_extra" in received.hyperparameters.values
    assert received.get_state() == trial_module.Trial.from_proto(back.to_proto()).get_state()
    assert protos.to_proto(received).SerializeToString(deterministic=True) == \
        received.to_proto().SerializeToString(deterministic=True)
