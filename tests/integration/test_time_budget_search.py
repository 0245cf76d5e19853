"""`tuner.max_time` through the real CLI: a search with far more trials than its time budget
allows stops starting trials once the budget has passed since its first trial started, finishes
the running ones, runs the confirmation stage and says why it ended; a bad duration gets one line
and exit 2."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime

import yaml

from tunecluster.tuning.examples import csv_path

SLEEPY = """
    import time

    def declare_hyperparameters(hp):
        hp.Int("x", 0, 1000)

    def run_trial(hp, data, seed):
        time.sleep(0.6)
        return [{"val_score": hp.get("x") / 1000.0}]
"""


def _spec(tmp_path, **tuner):
    (tmp_path / "trial.py").write_text(textwrap.dedent(SLEEPY))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "budget", "run_trial": "trial.py:run_trial",
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"objective": "val_score", "max_trials": 500, "seed": 2, **tuner}, "fit": {"tensorboard": False},
        "confirm": {"top": 1, "repeats": 2}, "cluster": {"workers": 2}}))


def test_a_search_ends_when_its_time_budget_has_passed(tmp_path, cli):
    _spec(tmp_path)
    result = cli("up", "-f", "spec.yaml", "--dir", "run", "--max-time", "5s", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    trials = document["trials"]
    starts = [datetime.fromisoformat(t["started"]).timestamp() for t in trials]
    first = min(starts)
    # 2 workers x 0.6 s trials: about 16 trials fit in 5 s; far fewer than max_trials
    assert 4 <= len(trials) < 60, len(trials)
    assert all(t["status"] == "COMPLETED" for t in trials)  # the running ones finished
    assert max(starts) <= first + 5.0 + 0.5, (max(starts) - first)  # none started after the budget
    assert any("time budget reached: tuner.max_time 5 s" in w for w in document["warnings"]), document["warnings"]
    assert "time budget reached" in result.stdout  # the live view said so
    confirmed = [t for t in trials if t["confirmed"]]
    assert len(confirmed) == 1 and confirmed[0]["confirmed"]["runs"] == 2  # the confirmation stage still ran
    assert yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())["tuner"]["max_time"] == 5.0


def test_a_bad_duration_is_one_line_and_exit_2(tmp_path, cli):
    _spec(tmp_path)
    result = cli("up", "-f", "spec.yaml", "--dir", "run", "--max-time", "soon", cwd=tmp_path, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-1500:])
    assert len(lines) == 1 and "tuner.max_time: 'soon' is not a duration" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


SLEEPY_SCRIPT = """
    import sys, time
    import keras_tuner

    class Sleepy(keras_tuner.RandomSearch):
        def run_trial(self, trial, *args, **kwargs):
            time.sleep(0.6)
            return {"val_accuracy": trial.hyperparameters.get("x") / 1000.0}

    def build(hp):  # declares the space; never trained
        hp.Int("x", 0, 1000)

    tuner = Sleepy(build, objective="val_accuracy", max_trials=500, seed=5, project_name="sleepy")
    tuner.search()
"""


def test_the_budget_also_stops_unmodified_keras_tuner_workers(tmp_path, cli):
    """`up --script`: the workers are Keras Tuner's own (CreateTrial), the chief is tunecluster's."""
    (tmp_path / "sleepy.py").write_text(textwrap.dedent(SLEEPY_SCRIPT))
    result = cli("up", "--script", "sleepy.py", "--workers", "2", "--dir", "run", "--max-time", "4",
                 cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    starts = [datetime.fromisoformat(t["started"]).timestamp() for t in document["trials"]]
    assert 3 <= len(starts) < 60 and all(t["status"] == "COMPLETED" for t in document["trials"])
    assert max(starts) <= min(starts) + 4.0 + 0.5
    assert any("time budget reached" in w for w in document["warnings"]), document["warnings"]
