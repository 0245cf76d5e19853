"""Trial leases against a real chief process (short settings): a worker that stops heartbeating
loses its trial to the next worker that asks, its late update and result are refused (the trial
is counted once), a heartbeat tells it so, and a restarted worker with the same id gets its own
trial back while the lease lives."""

from __future__ import annotations

import time

import grpc
import pytest

from chief_process import ChiefProcess, RawWorker, space_config

SPEC = {"name": "leases", "tuner": {"max_trials": 2, "seed": 1},
        "cluster": {"workers": 2, "heartbeat_interval": 0.2, "lease_timeout": 1.5}}


@pytest.fixture
def chief(tmp_path):
    process = ChiefProcess(tmp_path, SPEC, token="t").start()
    yield process
    process.stop()


def test_expired_lease_requeues_the_trial_and_refuses_the_late_result(chief):
    a = RawWorker(chief.address, "tuner0", token="t")
    b = RawWorker(chief.address, "tuner1", token="t")
    a.control.call("SetSpace", hyperparameters=space_config())
    mine = a.create_trial()
    assert mine.status == 1 or mine.trial_id == "0"
    # tuner0 stops heartbeating; tuner1 keeps asking and gets the same trial once the lease expires
    deadline = time.time() + 10
    while True:
        b.control.call("Heartbeat", tuner_id="tuner1", state="idle")
        theirs = b.create_trial()
        if theirs.trial_id == mine.trial_id:
            break
        if theirs.trial_id == "1":  # tuner1 first got the other trial: finish it, then ask again
            b.update_trial("1", 0.5)
            b.end_trial(theirs)
        # else STOPPED (both trials handed out) or IDLE: ask again; a requeued trial comes first
        assert time.time() < deadline, "the lease never expired"
        time.sleep(0.2)
    # the late worker's heartbeat says it lost the trial; its update and result are refused
    answer = a.control.call("Heartbeat", tuner_id="tuner0", state="running", trial=mine.trial_id)
    assert answer.get("revoked") == mine.trial_id
    for late in (lambda: a.update_trial(mine.trial_id, 0.99), lambda: a.end_trial(mine)):
        with pytest.raises(grpc.RpcError) as refused:
            late()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "refused" in refused.value.details()
    # the new holder's result counts, once
    b.update_trial(mine.trial_id, 0.6)
    b.end_trial(theirs)
    status = b.control.call("Status")
    assert status["counts"]["completed"] == 2 and status["requeued"] == 1
    assert status["refused_results"] == 2
    time.sleep(1.0)  # the writer coalesces updates
    rows = {r["trial_id"]: r for r in chief.results()["trials"]}
    assert rows[mine.trial_id]["worker"] == "tuner1" and rows[mine.trial_id]["requeues"] == 1
    assert rows[mine.trial_id]["score"] == pytest.approx(0.6)
    assert "lease expired" in chief.log_text()


def test_restarted_worker_with_the_same_id_gets_its_own_trial_back(chief):
    first = RawWorker(chief.address, "tuner0", token="t")
    first.control.call("SetSpace", hyperparameters=space_config())
    trial = first.create_trial()
    first.channel.close()
    again = RawWorker(chief.address, "tuner0", token="t")  # a new process, same id, lease still live
    again.control.call("Heartbeat", tuner_id="tuner0", state="running", trial=trial.trial_id, pid=2)
    assert again.create_trial().trial_id == trial.trial_id
    again.update_trial(trial.trial_id, 0.7)
    again.end_trial(trial)
    assert again.control.call("Status")["counts"]["completed"] == 1


def test_release_puts_the_trial_first_in_the_queue(chief):
    a = RawWorker(chief.address, "tuner0", token="t")
    a.control.call("SetSpace", hyperparameters=space_config())
    trial = a.create_trial()
    assert a.control.call("Release", tuner_id="tuner0", trial_id=trial.trial_id)["requeued"] is True
    b = RawWorker(chief.address, "tuner1", token="t")
    assert b.create_trial().trial_id == trial.trial_id


