"""tunecluster's work protocol: a WorkDone that asks for `next` gets the worker's next unit in
its answer (leased to it like a NextWork answer), and a refused result gets none."""

from __future__ import annotations

import pytest

from tunecluster.cluster.chief import Chief, ControlService
from tunecluster.core.network import free_port
from tunecluster.core.rundir import RunDir
from tunecluster.cluster.auth import Security
from tunecluster.tuning.examples import comprehensive_space
from tunecluster.tuning.spec import Experiment

RESULT = {"best": {"val_accuracy": 0.5}, "last": {"val_accuracy": 0.5}, "best_epoch": 0, "last_epoch": 0,
          "values": {}}


@pytest.fixture
def control(tmp_path):
    spec = Experiment.model_validate({"name": "proto", "tuner": {"kind": "random", "max_trials": 3},
                                      "cluster": {"workers": 2}, "confirm": {"enabled": False}})
    chief = Chief(spec, RunDir(tmp_path), "127.0.0.1", free_port(), security=Security(token="t"))
    chief.start()
    service = ControlService(chief.servicer, chief.book, chief.snapshot)
    service.SetSpace({"hyperparameters": comprehensive_space().get_config()})
    yield service
    chief.stop()


def test_workdone_with_next_hands_out_the_next_unit(control):
    first = control.NextWork({"tuner_id": "w0"})
    assert first["status"] == "RUNNING"
    reply = control.WorkDone({"tuner_id": "w0", "key": first["key"], "ok": True, "result": RESULT, "next": True})
    assert reply["accepted"] and reply["next"]["status"] == "RUNNING"
    second = reply["next"]
    assert second["key"] != first["key"]
    assert control.servicer.leases.holder(second["key"]) == "w0"
    assert "next" not in control.WorkDone({"tuner_id": "w0", "key": second["key"], "ok": True, "result": RESULT})
    third = control.NextWork({"tuner_id": "w0"})
    last = control.WorkDone({"tuner_id": "w0", "key": third["key"], "ok": True, "result": RESULT, "next": True})
    assert last["next"]["status"] == "STOPPED"  # max_trials reached: the answer says so
    assert control.servicer.oracle.trials[third["key"].split("#")[0]].status == "COMPLETED"


def test_a_refused_result_gets_no_next_unit(control):
    unit = control.NextWork({"tuner_id": "w0"})
    reply = control.WorkDone({"tuner_id": "w1", "key": unit["key"], "ok": True, "result": RESULT, "next": True})
    assert reply["accepted"] is False and "next" not in reply
