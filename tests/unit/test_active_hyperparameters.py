"""Only the hyperparameters a trial's training read are shown for it (the Pima model with one
layer read `units_0`, never `units_1 ... units_9`, though Keras Tuner gives it values for all)."""

from __future__ import annotations

import keras_tuner as kt

from tunecluster.cluster.work import Board
from tunecluster.kt_compat.hyperparameter_reads import reads_of
from tunecluster.tuning.results import active_names, active_values, to_csv


def _comprehensive_read(hp):
    for i in range(hp.Int("num_layers", 1, 10)):
        hp.Int(f"units_{i}", 32, 512, step=32)
        hp.Choice(f"activation_{i}", ["relu", "tanh"])
    return hp.Choice("optimizer", ["adam", "sgd"])


def test_reads_are_recorded_in_order_and_only_inside_the_block():
    hp = kt.HyperParameters()
    for i in range(3):
        hp.Int(f"units_{i}", 32, 512, step=32)
        hp.Choice(f"activation_{i}", ["relu", "tanh"])
    hp.Int("num_layers", 1, 10)
    hp.Choice("optimizer", ["adam", "sgd"])
    hp.values["num_layers"] = 1
    with reads_of(hp) as read:
        _comprehensive_read(hp)
        assert hp["optimizer"] == "adam"
    assert read == ["num_layers", "units_0", "activation_0", "optimizer"]
    assert "_retrieve" not in vars(hp) and "get" not in vars(hp)  # unwrapped after the block
    assert set(hp.values) > set(read)  # Keras Tuner still holds a value for every one


def test_an_inactive_conditional_hyperparameter_is_not_a_read():
    hp = kt.HyperParameters()
    kind = hp.Choice("kind", ["a", "b"])
    with reads_of(hp) as read:
        hp.Choice("kind", ["a", "b"])
        with hp.conditional_scope("kind", ["b"]):
            hp.Int("only_b", 1, 3)
    assert kind == "a" and read == ["kind"]


def test_rows_and_exports_show_the_values_read_and_keep_the_rest():
    values = {"num_layers": 1, "units_0": 64, "units_1": 96, "optimizer": "sgd", "tuner/epochs": 3}
    assert active_values(values, ["num_layers", "units_0", "optimizer"]) == {
        "num_layers": 1, "units_0": 64, "optimizer": "sgd", "tuner/epochs": 3}  # Hyperband's own kept
    assert active_values(values, None) == values  # not known (a stock Keras Tuner worker)
    board = Board(1, executions=2)
    board.add_trial("0")
    assert active_names(board.of_trial("0")) is None
    first = board.take("w0")
    board.finish(first.key, {"active": ["num_layers", "units_0"]})
    assert active_names(board.of_trial("0")) == ["num_layers", "units_0"]


def test_csv_columns_are_the_union_of_what_the_trials_read():
    document = {"trials": [
        {"trial_id": "0", "status": "COMPLETED", "hyperparameters": {"num_layers": 1, "units_0": 64}},
        {"trial_id": "1", "status": "COMPLETED", "hyperparameters": {"num_layers": 2, "units_0": 32, "units_1": 96}},
    ]}
    header, first, second = to_csv(document).splitlines()
    assert header.endswith("hp.num_layers,hp.units_0,hp.units_1")
    assert first.endswith("1,64,") and second.endswith("2,32,96")
