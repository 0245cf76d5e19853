"""The median stopping rule on constructed curves, and the heartbeat that carries every epoch to
the chief (tests/integration/test_median_stopping.py runs both for real)."""

from __future__ import annotations

import pytest

from tunecluster.cluster.worker.heartbeat import Heartbeat
from tunecluster.tuning.median_stopping import mean_curve, median_at, running_best, should_stop

REFERENCE = [[0.6, 0.7, 0.8, 0.85], [0.5, 0.75, 0.7, 0.9], [0.55, 0.65, 0.9, 0.88]]


def test_running_best_follows_the_direction():
    assert running_best([0.5, None, 0.4, 0.7], "max") == [0.5, 0.5, 0.5, 0.7]
    assert running_best([0.5, 0.6, 0.4], "min") == [0.5, 0.5, 0.4]


def test_median_of_best_so_far_at_an_epoch():
    # best so far at epoch 3: 0.8, 0.75, 0.9 -> 0.8
    assert median_at(REFERENCE, 3, "max", min_trials=3) == pytest.approx(0.8)
    assert median_at(REFERENCE, 3, "max", min_trials=4) is None  # too few trials reached it
    assert median_at(REFERENCE, 5, "max", min_trials=1) is None  # none reached epoch 5


def test_a_curve_below_the_median_stops_and_one_at_it_does_not():
    assert should_stop([0.5, 0.52, 0.55], REFERENCE, "max", grace_epochs=2, min_trials=3) == pytest.approx(0.8)
    assert should_stop([0.5, 0.8, 0.7], REFERENCE, "max", grace_epochs=2, min_trials=3) is None  # equal: goes on
    assert should_stop([0.1], REFERENCE, "max", grace_epochs=2, min_trials=3) is None  # in its grace epochs
    losses = [[1.0, 0.8], [0.9, 0.7], [1.1, 0.6]]
    assert should_stop([1.0, 0.9], losses, "min", grace_epochs=1, min_trials=3) == pytest.approx(0.7)


def test_mean_curve_of_executions():
    assert mean_curve([[0.5, 0.7], [0.7, None, 0.9]]) == [pytest.approx(0.6), 0.7, 0.9]


def test_every_epoch_rides_on_the_beats_and_survives_a_failed_one():
    sent, fail = [], [True]

    def send(message):
        if fail[0]:
            fail[0] = False
            raise ConnectionError("chief away")
        sent.append(message)
        return {"ok": True}

    beat = Heartbeat(send, "tuner0", interval=1.0)
    for epoch in (1, 2, 3):
        beat.record_epoch("0#0", epoch, {"val_accuracy": epoch / 10})
    beat.report(state="running", epoch=3)
    with pytest.raises(ConnectionError):
        beat._send_once()
    beat.record_epoch("0#0", 4, {"val_accuracy": 0.4})
    beat._send_once()  # one beat: the latest state and all four epochs, in order
    assert [row["epoch"] for row in sent[0]["epochs"]] == [1, 2, 3, 4]
    assert sent[0]["epoch"] == 3 and sent[0]["method"] == "Heartbeat"
    beat._send_once()
    assert "epochs" not in sent[1]
