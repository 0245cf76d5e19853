"""Median stopping on a real search (chief and worker processes, real tiny TensorFlow trainings):
every epoch of every training reaches the chief on the heartbeats (the trainings' curves in
results.json), the constructed hopeless configuration is stopped at an epoch boundary soon after
the grace epochs and recorded as STOPPED_EARLY with the value it reached, and none of the sound
configurations (identical curves: never below their own median) is stopped."""

from __future__ import annotations

import json

import yaml

from curve_models import LOADER, MODEL
from tensorboard_events import texts


def test_median_stopping_stops_the_hopeless_trial_and_no_sound_one(tmp_path, cli):
    (tmp_path / "data.py").write_text(LOADER)
    (tmp_path / "model.py").write_text(MODEL)
    epochs = 25
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "median", "hypermodel": "model.py:build", "data": {"loader": "data.py:load"},
        "tuner": {"kind": "grid", "max_trials": 5, "objective": "val_accuracy",
                  "early_stopping": {"kind": "median", "grace_epochs": 2, "min_trials": 3}},
        "fit": {"epochs": epochs, "batch_size": 32, "tensorboard": True},
        "confirm": {"enabled": False},
        "cluster": {"workers": 1, "tf_threads": 1, "heartbeat_interval": 0.2, "lease_timeout": 5}}))
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=400, env={"EPOCH_PAUSE": "0.05"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {r["hyperparameters"]["config"]: r for r in document["trials"]}
    assert set(rows) == {"sound_a", "sound_b", "sound_c", "sound_d", "hopeless"}

    hopeless = rows["hopeless"]
    assert hopeless["status"] == "STOPPED_EARLY", hopeless
    stopped = hopeless["stopped_early"]
    assert 2 <= stopped < epochs  # after the grace epochs, well before the end
    assert len(hopeless["curve"]) == stopped  # it trained no epoch past the boundary it was stopped at
    assert hopeless["score"] is not None and hopeless["score"] < 0.7  # the value it reached, recorded
    assert "stopped early after epoch" in hopeless["message"]
    # TensorBoard's Text tab says so, at the epoch it stopped
    board = tmp_path / "run" / "tensorboard"
    assert texts(board / hopeless["trial_id"]) == [(stopped - 1, f"stopped early by the chief after epoch {stopped}")]
    # for Keras Tuner's oracle it is COMPLETED with that value: a Bayesian oracle fits it like any other
    state = json.loads((tmp_path / "run" / "kt" / "median" / f"trial_{hopeless['trial_id']}" / "trial.json").read_text())
    assert state["status"] == "COMPLETED" and state["score"] == hopeless["score"]

    for name in ("sound_a", "sound_b", "sound_c", "sound_d"):
        row = rows[name]
        assert row["status"] == "COMPLETED" and row["stopped_early"] is None, row
        # every epoch's metrics reached the chief and results.json
        assert len(row["curve"]) == epochs and all(v is not None for v in row["curve"])
        assert len(row["executions"][0]["curve"]) == epochs
        assert row["score"] > 0.9
        assert texts(board / row["trial_id"]) == []  # nothing to say of a training that ran them all
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["counts"]["stopped_early"] == 1
    assert "median stopping" in (tmp_path / "run" / "logs" / "chief.log").read_text()
