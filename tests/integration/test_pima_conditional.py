"""`up --example pima-conditional`: the tutorial's conditional space (architecture simple or complex
choosing the ranges of depth and width) searched for real; each trial shows only its own branch's
hyperparameters, in the results and in the exported best model's files."""

from __future__ import annotations

import json

from tunecluster.core.rundir import RunDir

BRANCH = {"simple": {"simple_layers", "simple_units"},
          "complex": {"complex_layers", "complex_units", "complex_dropout"}}


def test_only_the_active_branch_is_shown(tmp_path, cli):
    run = RunDir(tmp_path / "conditional")
    result = cli("up", "--example", "pima-conditional", "--dir", str(run.root), "--workers", "2",
                 "--max-trials", "4", "--epochs", "1", "--no-confirm", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = json.loads(run.results_json.read_text())["trials"]
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials)
    seen = set()
    for trial in trials:
        values = trial["hyperparameters"]
        branch = values["architecture"]
        seen.add(branch)
        assert set(values) == {"architecture", "optimizer"} | BRANCH[branch], values
    assert seen == {"simple", "complex"}  # (seed 1 draws both)
    best = json.loads(run.best_hyperparameters.read_text())
    assert set(best) == {"architecture", "optimizer"} | BRANCH[best["architecture"]]
