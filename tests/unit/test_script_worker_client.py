"""The worker side of a --script run around Keras Tuner's client, on a stand-in client (the real
one is exercised by tests/integration/test_script_runs.py): IDLE answers back off instead of
spinning, a trial taken back and handed to the same worker again is run, a refused result is
dropped, a failed trial's error goes to the chief, SIGTERM stops the loop."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from tunecluster.cluster.worker.chief_link import ResultRefused
from tunecluster.cluster.worker.interruptions import LeaseLost, TrialInterrupted
from tunecluster.script.worker_role import WorkerGuard
from tunecluster.tuning.spec import Experiment


class Recorder:
    def __init__(self):
        self.calls = []

    def report(self, **fields):
        self.calls.append(fields)

    def call(self, method, **request):
        self.calls.append((method, request))
        return {}


class StandInClient:
    def __init__(self, answers):
        self.answers = list(answers)
        self.ended = []

    def create_trial(self, tuner_id):
        return self.answers.pop(0)

    def update_trial(self, trial_id, metrics, step=0):
        raise ResultRefused("trial 1 is now held by tuner1")

    def end_trial(self, trial):
        self.ended.append(trial.trial_id)
        raise ResultRefused("trial 1 is not running any more")


def _guard(client) -> WorkerGuard:
    guard = WorkerGuard.__new__(WorkerGuard)
    guard.spec = Experiment.model_validate({"cluster": {"idle_backoff_max": 0.01}})
    guard.role = SimpleNamespace(tuner_id="tuner0")
    guard.trial, guard.lost, guard.stop_requested = None, set(), threading.Event()
    guard.heartbeat, guard.control = Recorder(), Recorder()
    guard._wrap_client(client)
    return guard


def _trial(trial_id, status="RUNNING", message=None):
    return SimpleNamespace(trial_id=trial_id, status=status, message=message)


def test_idle_answers_are_waited_out_and_a_trial_handed_back_is_ours_again():
    client = StandInClient([_trial(None, "IDLE"), _trial(None, "IDLE"), _trial("1")])
    guard = _guard(client)
    guard.lost.add("1")  # the chief took trial 1 back from us earlier ...
    assert client.create_trial("tuner0").trial_id == "1"  # ... and hands it to us again
    assert guard.trial == "1"
    guard.check()  # not lost any more: the training goes on
    assert [c.get("state") for c in guard.heartbeat.calls] == ["idle", "idle", "running"]


def test_a_refused_update_stops_the_trial_and_a_refused_result_is_dropped():
    client = StandInClient([_trial("1")])
    guard = _guard(client)
    client.create_trial("tuner0")
    with pytest.raises(LeaseLost):
        client.update_trial("1", {"val_accuracy": 0.5})
    with pytest.raises(LeaseLost):
        guard.check()
    client.end_trial(_trial("1", "COMPLETED"))  # refused by the chief: logged, not raised
    assert client.ended == ["1"] and guard.trial is None


def test_a_failed_trials_error_goes_to_the_chief_before_its_result():
    client = StandInClient([_trial("2")])
    guard = _guard(client)
    client.create_trial("tuner0")
    message = 'Traceback (most recent call last):\n  File "s.py", line 3\nValueError: units=8 cannot train\n'
    client.end_trial(_trial("2", "FAILED", message))
    assert guard.control.calls == [("TrialNote", {"tuner_id": "tuner0", "trial_id": "2",
                                                  "error_type": "ValueError", "message": "units=8 cannot train"})]


def test_sigterm_stops_the_loop_between_trials_and_before_a_result():
    client = StandInClient([_trial(None, "IDLE")] * 5)
    guard = _guard(client)
    guard.stop_requested.set()
    with pytest.raises(TrialInterrupted):
        client.create_trial("tuner0")
    with pytest.raises(TrialInterrupted):
        client.end_trial(_trial("3", "COMPLETED"))  # a trial cut short is given back, not reported
    assert client.ended == []
