"""The report of a search still running (with failed trials), and the live view's plain lines:
from run-folder documents written by the test, no processes."""

from __future__ import annotations

import os

import pytest

FIGURES = ("best-so-far", "parallel-coordinates", "timeline", "hyperparameter-scores")


def test_plain_live_lines_show_each_worker_and_the_best(tmp_path):
    """Not a terminal (CI logs): one line per change with ETA, the best's hyperparameters, and per
    worker its trial, epoch, latest objective value and restarts; a failure is printed once."""
    import io

    from rich.console import Console

    from tunecluster.ui.live import LiveView
    from tunecluster.core.rundir import RunDir, write_json

    run = RunDir(tmp_path)
    progress = {
        "objective": "val_accuracy", "max_trials": 10,
        "counts": {"completed": 2, "running": 2, "failed": 1, "invalid": 0},
        "best": {"trial_id": "1", "score": 0.75, "hyperparameters": {"optimizer": "adam", "units": 64}},
        "workers": {"tuner0": {"state": "running", "trial": "3", "epoch": 2, "epochs": 5, "restarts": 1,
                               "metrics": {"val_accuracy": 0.7123}},
                    "tuner1": {"state": "idle", "trial": None, "restarts": 0}},
        "last_failure": {"trial_id": "2", "worker": "tuner1", "error_type": "ValueError", "message": "bad"},
    }
    steps = []

    def alive():
        steps.append(1)
        if len(steps) == 3:  # only an epoch advances: a line only once plain_every has passed
            progress["workers"]["tuner0"].update(epoch=3, metrics={"val_accuracy": 0.7201})
            write_json(run.progress, progress)
        if len(steps) == 5:  # a trial ends between two reads
            progress["counts"] = {"completed": 3, "running": 1, "failed": 1, "invalid": 0}
            write_json(run.progress, progress)
        return len(steps) <= 6

    write_json(run.progress, progress)
    out = io.StringIO()
    view = LiveView(run, Console(file=out, width=300), interval=0.05)
    view.plain_every = view.min_gap = 0.0
    view.follow(alive)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines  # first, failure, epoch 3, trial 3 done
    assert "tuner0: running trial 3 epoch 3/5 val_accuracy=0.7201 restarts 1" in lines[2]
    first = lines[0]
    assert "trials 2/10 done, 2 running, 1 failed; best val_accuracy=0.7500 (trial 1) [optimizer=adam, units=64]" in first
    assert "tuner0: running trial 3 epoch 2/5 val_accuracy=0.7123 restarts 1" in first
    assert "tuner1: idle restarts 0" in first
    assert sum("last failure: trial 2 on tuner1: ValueError: bad" in line for line in lines) == 1
    assert "trials 3/10 done" in lines[-1] and "eta " in lines[-1]


def test_report_of_a_running_search_with_failures(tmp_path):
    """A search still running (a RUNNING trial, a FAILED one, one taken back to the queue), numeric,
    log-sampled, boolean and choice hyperparameters, one missing in a trial: the report is built,
    the running trial's bar reaches the last update, failed trials are in the table with their error."""
    from tunecluster.core.rundir import write_json
    from tunecluster.report import build_report
    from tunecluster.report.data import load_run, utilisation

    (tmp_path / "spec.yaml").write_text("name: live\n")
    write_json(tmp_path / "kt" / "live" / "oracle.json", {"hyperparameters": {"space": [
        {"class_name": "Float", "config": {"name": "lr", "min_value": 1e-4, "max_value": 1e-1, "sampling": "log"}},
        {"class_name": "Int", "config": {"name": "units", "min_value": 8, "max_value": 128, "step": 8}},
        {"class_name": "Choice", "config": {"name": "act", "values": ["relu", "tanh"]}},
        {"class_name": "Boolean", "config": {"name": "bn"}}]}})

    def row(tid, status, score, hps, worker, start, end, **extra):
        return {"trial_id": tid, "status": status, "score": score, "best_step": 0, "hyperparameters": hps,
                "worker": worker, "started": None if start is None else f"2026-01-01T10:00:{start:02d}.000+00:00",
                "ended": None if end is None else f"2026-01-01T10:00:{end:02d}.000+00:00",
                "duration_s": None if end is None else end - start, "error_type": None, "message": None,
                "requeues": 0, **extra}

    trials = [
        row("0", "COMPLETED", 0.7, {"lr": 0.01, "units": 32, "act": "relu", "bn": True}, "tuner0", 0, 10),
        row("1", "FAILED", None, {"lr": 0.001, "units": 64, "act": "tanh", "bn": False}, "tuner1", 2, 5,
            error_type="ValueError", message="shapes do not match"),
        row("2", "COMPLETED", 0.8, {"lr": 0.0005, "units": 128, "act": "tanh"}, "tuner1", 6, 20),
        row("3", "RUNNING", None, {"lr": 0.05, "units": 8, "act": "relu", "bn": True}, "tuner0", 12, None),
        row("4", "QUEUED", None, {"lr": 0.002, "units": 16, "act": "relu", "bn": False}, None, None, None),
    ]
    write_json(tmp_path / "results.json", {"experiment": "live", "tuner": "random", "objective": "val_accuracy",
                                           "direction": "max", "max_trials": 10, "finished": False,
                                           "best_trial": "2", "trials": trials})
    from datetime import datetime

    last_update = datetime.fromisoformat("2026-01-01T10:00:25+00:00").timestamp()
    os.utime(tmp_path / "results.json", (last_update, last_update))  # the chief's last write
    made = build_report(tmp_path, tmp_path / "r.html", png=True)
    html = made.html.read_text()
    assert not made.finished and "still running" in html
    for key in FIGURES:
        assert f'<section id="{key}">' in html
    assert "ValueError: shapes do not match" in html and "lr (log10)" in html
    assert all((tmp_path / f"r-{key}.png").stat().st_size > 5_000 for key in FIGURES)
    data = load_run(tmp_path)
    assert [hp.kind for hp in data.hyperparameters] == ["float", "int", "choice", "boolean"]
    assert data.hyperparameters[0].log
    running = utilisation(data)
    assert running["window_s"] == pytest.approx(25)  # the running trial's bar reaches the last update
    assert running["workers"]["tuner0"]["busy_s"] == pytest.approx(10 + 13)
    assert running["workers"]["tuner1"]["utilisation"] == pytest.approx((3 + 14) / 25)
    assert '"n\\u002fa"' in html or '"n/a"' in html  # bn missing in trial 2: its n/a tick
