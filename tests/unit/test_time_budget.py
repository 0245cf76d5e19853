"""`tuner.max_time`: the duration forms the spec takes, when the chief's budget is spent, what
the live view says of it, and `up --resume --max-time` rewriting the run's spec."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tunecluster.backends.run_folder import prepare_run_dir
from tunecluster.cluster.chief.time_budget import TimeBudget
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.spec import load_spec
from tunecluster.tuning.spec_stopping import duration_seconds
from tunecluster.ui.live import Eta, budget_left, summary_line


@pytest.mark.parametrize("text, seconds", [(90, 90.0), ("45", 45.0), ("90s", 90.0), ("30m", 1800.0),
                                           ("8h", 28800.0), ("1.5d", 129600.0), (" 2 h ", 7200.0)])
def test_durations(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text, fragment", [("soon", "is not a duration: write seconds"),
                                            ("10 minutes", "is not a duration"), (0, "must be positive"),
                                            ("-5", "is not a duration")])
def test_bad_durations_say_how_to_write_one(text, fragment):
    with pytest.raises(UsageError, match=fragment):
        Overrides(max_time=text).apply(example_spec("pima-optimizer"))


def test_the_budget_counts_from_the_first_trial_and_stays_spent():
    book = SimpleNamespace(search_started_at=None)
    budget = TimeBudget(60.0, book)
    assert not budget.spent(now=1000.0)  # no trial started yet: nothing to count from
    book.search_started_at = 1000.0
    assert not budget.spent(now=1059.9) and budget.note() is None
    assert budget.spent(now=1060.0) and budget.reached_at == 1060.0
    assert budget.spent(now=1000.0)  # once reached, for good (a clock step back changes nothing)
    assert "tuner.max_time 60 s passed" in budget.note()
    assert budget.summary() == {"max_time": 60.0, "started_at": 1000.0, "reached_at": 1060.0}
    assert not TimeBudget(None, book).spent(now=10**9) and TimeBudget(None, book).summary() is None


def test_the_live_view_shows_the_budget_left_and_caps_the_eta_by_it(monkeypatch):
    progress = {"max_trials": 100, "counts": {"completed": 10, "running": 2}, "objective": "val_accuracy",
                "updated_at": 1100.0, "time_budget": {"max_time": 300.0, "started_at": 1000.0, "reached_at": None}}
    assert budget_left(progress) == 200.0
    assert "3m20s of the time budget left" in summary_line(progress)
    clock = iter([0.0, 10.0, 20.0])
    monkeypatch.setattr("tunecluster.ui.live.time.monotonic", lambda: next(clock))
    eta = Eta()
    eta.update(progress)
    later = {**progress, "counts": {"completed": 11, "running": 2}}
    assert eta.update(later) == 200.0  # 89 trials at 10 s each would take 890 s; the budget ends first
    assert eta.update({**later, "time_budget": None}) == pytest.approx(20.0 * 89)  # no budget: the rate
    reached = {**progress, "time_budget": {**progress["time_budget"], "reached_at": 1300.0}}
    assert budget_left(reached) == 0.0 and "time budget reached" in summary_line(reached)
    assert budget_left({"counts": {}}) is None and "budget" not in summary_line({"counts": {}})


def test_resume_with_a_new_budget_rewrites_the_spec(tmp_path):
    run = RunDir(tmp_path / "run")
    spec = Overrides(max_time="10m").apply(example_spec("pima-optimizer"))
    prepare_run_dir(run, spec, force=False, resume=False)
    assert load_spec(run.spec).tuner.max_time == 600.0
    resumed = prepare_run_dir(run, spec, force=False, resume=True, max_time="2h")
    assert resumed.tuner.max_time == 7200.0 and load_spec(run.spec).tuner.max_time == 7200.0
    assert prepare_run_dir(run, spec, force=False, resume=True).tuner.max_time == 7200.0  # kept
