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
    beat.report(state="running", epoch=3, epochs=10)
    with pytest.raises(ConnectionError):
        beat._send_once()
    beat.record_epoch("0#0", 4, {"val_accuracy": 0.4})
    beat._send_once()  # one beat: the latest state and all four epochs, in order
    assert [row["epoch"] for row in sent[0]["epoch_reports"]] == [1, 2, 3, 4]
    assert sent[0]["epoch"] == 3 and sent[0]["epochs"] == 10 and sent[0]["method"] == "Heartbeat"
    beat._send_once()
    assert "epoch_reports" not in sent[1] and sent[1]["epochs"] == 10  # the training's length stays a number


def test_a_heartbeat_with_the_training_length_and_epoch_reports_keeps_both(tmp_path):
    """`epochs` (the training's length, for the live view) and `epoch_reports` (the curve) are two
    fields: the chief records the length as a number and the reports as the unit's curve."""
    from tunecluster.cluster.auth import Security
    from tunecluster.cluster.chief import Chief, ControlService
    from tunecluster.core.network import free_port
    from tunecluster.core.rundir import RunDir
    from tunecluster.tuning.examples import comprehensive_space
    from tunecluster.tuning.spec import Experiment

    spec = Experiment.model_validate({"name": "beat", "tuner": {"kind": "random", "max_trials": 3},
                                      "cluster": {"workers": 1}})
    chief = Chief(spec, RunDir(tmp_path), "127.0.0.1", free_port(), security=Security(token="t"))
    chief.start()
    try:
        control = ControlService(chief.servicer, chief.book, chief.snapshot)
        control.SetSpace({"hyperparameters": comprehensive_space().get_config()})
        work = control.NextWork({"tuner_id": "w0"})
        assert work["status"] == "RUNNING"
        beat = {"tuner_id": "w0", "state": "running", "work": work["key"], "epoch": 1, "epochs": 10}
        assert control.Heartbeat(beat)["ok"]  # the length alone: no reports, no failure
        reports = [{"work": work["key"], "epoch": 1, "metrics": {"val_accuracy": 0.6}}]
        assert control.Heartbeat({**beat, "epoch_reports": reports})["ok"]
        assert chief.book.workers["w0"]["epochs"] == 10
        unit = chief.servicer.work.board.units[work["key"]]
        assert [m.get("val_accuracy") for m in unit.curve] == [0.6]
    finally:
        chief.stop()
