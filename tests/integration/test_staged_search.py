"""A two-stage search on a real cluster (`stages: random 3, bayesian 2`): the Bayesian stage's
trials start only after every random trial ended, its first suggestion starts from all of them,
and the same two workers run both stages without a restart."""

from __future__ import annotations

import json
from datetime import datetime

import yaml

from tunecluster.core.rundir import RunDir
from tunecluster.tuning.examples import csv_path


def test_the_bayesian_stage_gets_every_trial_of_the_random_stage(tmp_path, cli):
    spec = {"name": "staged", "hypermodel": "tunecluster.tuning.examples.pima:build_units",
            "data": {"csv": str(csv_path()), "target": "Outcome"},
            "stages": [{"kind": "random", "max_trials": 3}, {"kind": "bayesian", "max_trials": 2}],
            "fit": {"epochs": 1}, "confirm": {"enabled": False}, "cluster": {"workers": 2}}
    (tmp_path / "tunecluster.yaml").write_text(yaml.safe_dump(spec))
    run = RunDir(tmp_path / "run")
    result = cli("up", "--dir", str(run.root), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = {t["trial_id"]: t for t in json.loads(run.results_json.read_text())["trials"]}
    assert sorted(trials) == ["0", "1", "2", "3", "4"]
    assert all(t["status"] == "COMPLETED" for t in trials.values())
    at = datetime.fromisoformat
    first_stage_over = max(at(trials[t]["ended"]) for t in "012")
    assert all(at(trials[t]["started"]) >= first_stage_over for t in "34")
    chief_log = run.log("chief").read_text()
    assert "stage 2 (bayesian): starting from the 3 completed trials of stage 1 (0, 1, 2)" in chief_log
    status = json.loads(cli("status", "--dir", str(run.root), "--format", "json", cwd=tmp_path).stdout)
    workers = [r for r in status["roles"] if r["name"].startswith("worker")]
    assert len(workers) == 2 and all(r["restarts"] == 0 for r in workers)
    assert {trials[t]["worker"] for t in "34"} <= {r["tuner_id"] for r in workers}
    saved = yaml.safe_load(run.spec.read_text())
    assert saved["tuner"]["kind"] == "bayesian" and saved["tuner"]["max_trials"] == 5
