"""What a `run_trial` function returns (a number, a dict, per-epoch dicts, a History) becomes the
training's epochs and scores; its call signature is bound by position."""

from __future__ import annotations

import pytest



def test_what_run_trial_returns_becomes_epochs():
    from keras_tuner.src.engine import objective as objective_module

    from tunecluster.core.errors import UsageError
    from tunecluster.cluster.worker.function_tuner import as_history, best_and_last, bind_run_trial, split_metrics

    assert as_history(0.7, "val_accuracy") == [{"val_accuracy": 0.7}]
    import numpy as np

    assert as_history(np.float32(0.5), "score") == [{"score": 0.5}]
    assert as_history({"val_accuracy": 1, "loss": 2}, "val_accuracy") == [{"val_accuracy": 1.0, "loss": 2.0}]
    history = type("History", (), {"history": {"val_accuracy": [0.5, 0.7, 0.6], "loss": [3, 2, 1]}})()
    epochs = as_history(history, "val_accuracy")
    assert epochs[1] == {"val_accuracy": 0.7, "loss": 2.0}
    objective = objective_module.Objective("val_accuracy", "max")
    best, best_epoch, last, last_epoch = best_and_last(epochs, objective)
    assert (best_epoch, last_epoch, best["val_accuracy"], last["val_accuracy"]) == (1, 2, 0.7, 0.6)
    ties = best_and_last([{"val_accuracy": 0.7}, {"val_accuracy": 0.7}], objective)
    assert ties[1] == 0  # the first of equal epochs, as Keras Tuner
    assert split_metrics({"val_accuracy": 0.7, "accuracy": 0.9, "val_loss": 0.4}) == {"accuracy": 0.7, "loss": 0.4}
    assert split_metrics({"score": 3.0}) == {"score": 3.0}
    for bad, fragment in [(None, "returned NoneType"), (True, "returned bool"), ([], "returned list"),
                          ({"val_accuracy": "high"}, "non-numeric metric 'val_accuracy'"),
                          ({"loss": 1.0}, "without the objective 'val_accuracy'")]:
        with pytest.raises(UsageError, match=fragment):
            as_history(bad, "val_accuracy")
    seen = []
    bind_run_trial(lambda hp: seen.append((hp,)))("h", "d", 7)
    bind_run_trial(lambda hp, data: seen.append((hp, data)))("h", "d", 7)
    bind_run_trial(lambda hp, data, seed: seen.append((hp, data, seed)))("h", "d", 7)
    bind_run_trial(lambda hp, *, seed: seen.append((hp, seed)))("h", "d", 7)
    bind_run_trial(lambda *args: seen.append(args))("h", "d", 7)
    assert seen == [("h",), ("h", "d"), ("h", "d", 7), ("h", 7), ("h", "d", 7)]
    with pytest.raises(UsageError, match="takes no argument"):
        bind_run_trial(lambda: 1)
