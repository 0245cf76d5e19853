"""Stopped, promoted and resumed trainings in the results table, the live view's summary line and
the report (from run-folder documents written by the test; the integration tests produce them
for real: test_median_stopping, test_asha_search, test_resume_training)."""

from __future__ import annotations

import io

from rich.console import Console


def _row(tid, status, score, curve, hps, **extra):
    return {"trial_id": tid, "status": status, "score": score, "best_step": 0, "hyperparameters": hps,
            "all_hyperparameters": hps, "worker": "tuner0", "started": f"2026-01-01T10:00:0{tid}.000+00:00",
            "ended": f"2026-01-01T10:00:0{int(tid) + 1}.000+00:00", "duration_s": 1.0, "error_type": None,
            "message": None, "requeues": 0, "curve": curve, "executions": [], **extra}


TRIALS = [
    _row("0", "COMPLETED", 0.9, [0.6, 0.8, 0.9], {"lr": 0.01, "tuner/epochs": 3, "tuner/initial_epoch": 0}),
    _row("1", "STOPPED_EARLY", 0.5, [0.5, 0.5], {"lr": 0.0, "tuner/epochs": 3, "tuner/initial_epoch": 0},
         stopped_early=2, message="stopped early after epoch 2 (median stopping)"),
    _row("2", "COMPLETED", 0.95, [0.6, 0.8, 0.9, 0.93, 0.95],
         {"lr": 0.01, "tuner/epochs": 5, "tuner/initial_epoch": 3, "tuner/trial_id": "0"},
         executions=[{"resumed_from": 4}]),
]
DOCUMENT = {"experiment": "stops", "tuner": "asha", "objective": "val_accuracy", "direction": "max",
            "max_trials": None, "finished": True, "best_trial": "2", "trials": TRIALS}


def test_the_results_table_names_stopped_promoted_and_resumed_trials():
    from tunecluster.ui.tables import results_table

    console = Console(file=io.StringIO(), width=250)
    console.print(results_table(DOCUMENT))
    text = console.file.getvalue()
    assert "STOPPED_EARLY" in text and "stopped early after epoch 2" in text
    assert "promoted from trial 0 (epoch 3)" in text and "resumed from epoch 4" in text
    # the stopped trial is ranked with the scored trials (by the value it reached), not with failures
    from tunecluster.tuning.results import sorted_rows

    assert [r["trial_id"] for r in sorted_rows(DOCUMENT)] == ["2", "0", "1"]


def test_the_summary_line_counts_stopped_and_promoted_trials():
    from tunecluster.ui.live import summary_line

    line = summary_line({"objective": "val_accuracy", "max_trials": 9,
                         "counts": {"completed": 3, "running": 1, "stopped_early": 1, "promoted": 1}})
    assert "1 stopped early" in line and "1 promoted" in line


def test_the_report_draws_every_curve_with_stop_points_and_rungs(tmp_path):
    from tunecluster.core.rundir import write_json
    from tunecluster.report import build_report

    (tmp_path / "spec.yaml").write_text("name: stops\n")
    write_json(tmp_path / "kt" / "stops" / "oracle.json", {"hyperparameters": {"space": [
        {"class_name": "Float", "config": {"name": "lr", "min_value": 0.0, "max_value": 0.1}}]}})
    write_json(tmp_path / "results.json", DOCUMENT)
    html = build_report(tmp_path, tmp_path / "r.html").html.read_text()
    assert '<section id="training-curves">' in html
    assert "stopped after epoch" in html and "promoted at epoch" in html
    assert '"training-curves"' in html.split('id="report-summary"')[1]  # listed among the figures


def test_the_tensorboard_note_of_a_training_that_does_not_start_from_scratch():
    from tunecluster.cluster.worker.training_notes import start_note

    assert start_note({"x": 1}, None, False) is None
    assert start_note({"tuner/trial_id": "03", "tuner/initial_epoch": 3}, 3, True) == (
        3, "promoted from trial 03: continues its checkpoint after epoch 3")
    assert start_note({"x": 1}, 5, False) == (5, "resumed from its checkpoint after epoch 5 (taken back from another worker)")
    assert start_note({"tuner/trial_id": "0007", "tuner/initial_epoch": 4}, None, False) == (
        4, "continues trial 0007's weights after epoch 4 (a later Hyperband round)")
    assert start_note({"tuner/trial_id": None, "tuner/initial_epoch": 0}, None, False) is None


def test_rows_are_ranked_confirmed_first_then_by_score_then_the_rest_each_once():
    """sorted_rows places each row by identity (it used to test `row in list`, comparing whole
    rows: 1.4 s for a 10,000-trial results.json, printed by every `up`)."""
    from tunecluster.tuning.results import sorted_rows

    rows = [_row(str(n % 10), "COMPLETED", (n * 37 % 101) / 100, [], {"n": n}) for n in range(3000)]
    rows[5]["status"], rows[5]["score"] = "FAILED", None
    rows[6]["status"], rows[6]["score"] = "RUNNING", None
    for n, row in enumerate(rows):
        row["trial_id"] = f"{n:05d}"
    document = {"direction": "max", "trials": rows,
                "confirmation": {"ranking": ["00002", "00001", "00005"]}}
    rows[1]["confirmed"], rows[2]["confirmed"] = {"mean": 0.7}, {"mean": 0.8}
    ranked = sorted_rows(document)
    ids = [r["trial_id"] for r in ranked]
    assert len(ids) == len(set(ids)) == 3000
    assert ids[:2] == ["00002", "00001"]  # confirmed (00005 has no confirmed mean), in the ranking's order
    assert ids[-2:] == ["00005", "00006"]  # neither scored nor confirmed: last, in id order
    scores = [r["score"] for r in ranked[2:-2]]
    assert scores == sorted(scores, reverse=True)
