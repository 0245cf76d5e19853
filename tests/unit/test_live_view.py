"""The live view in a log (not a terminal): a line when something a reader cares about changed,
at most one every few seconds, and the final state always."""

from __future__ import annotations

import io

from rich.console import Console

from tunecluster.core.rundir import RunDir, write_json
from tunecluster.ui.live import LiveView


def test_a_busy_search_prints_a_few_lines_not_one_per_poll(tmp_path):
    """A 12-trial run whose workers flip between trials every poll used to repeat its status line
    ~40 times; now changes coalesce into at most one line per `min_gap` seconds."""
    run = RunDir(tmp_path)
    now = [0.0]
    polls = []

    def progress(step: int) -> dict:
        done = min(12, step // 4)
        return {"objective": "val_accuracy", "max_trials": 12,
                "counts": {"completed": done, "running": 2, "failed": 0, "invalid": 0},
                "best": {"trial_id": "0", "score": 0.7, "hyperparameters": {"units": 8}} if done else None,
                "workers": {f"tuner{w}": {"state": "running" if (step + w) % 2 else "between trials",
                                          "trial": str(step + w), "epoch": 1, "restarts": 0} for w in range(2)}}

    def alive():
        step = len(polls)
        polls.append(step)
        now[0] = step * 0.5  # a poll every 0.5 s: 48 polls, 24 s
        write_json(run.progress, progress(step))
        return step < 48

    out = io.StringIO()
    view = LiveView(run, Console(file=out, width=400), interval=0, clock=lambda: now[0])
    view.follow(alive)
    lines = out.getvalue().splitlines()
    assert 4 <= len(lines) <= 7, lines  # 24 s at most one line per 5 s, and the final state
    assert "trials 12/12 done" in lines[-1]
    assert len(set(line.split("] ", 1)[1] for line in lines)) == len(lines)  # never the same line twice


def test_a_quiet_search_prints_nothing_new(tmp_path):
    run = RunDir(tmp_path)
    write_json(run.progress, {"objective": "loss", "max_trials": 3, "counts": {"completed": 1},
                              "workers": {"tuner0": {"state": "running", "trial": "1", "epoch": 1}}})
    now = [0.0]
    polls = []

    def alive():
        polls.append(1)
        now[0] += 1.0
        return len(polls) < 20

    out = io.StringIO()
    LiveView(run, Console(file=out, width=300), interval=0, clock=lambda: now[0]).follow(alive)
    assert len(out.getvalue().splitlines()) == 1
