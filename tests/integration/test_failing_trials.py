"""Failures that explain themselves: a trial that raises in the worker is FAILED with its error's
type and message in results.json, `tunecluster results` and the live view; reaching
`max_consecutive_failed_trials` stops the search with a clear message (no hung chief, nothing left
running)."""

from __future__ import annotations

import json
import re
import textwrap

import yaml

from tunecluster.tuning.examples import csv_path

BROKEN_MODEL = textwrap.dedent("""
    import keras

    def build(hp):
        units = hp.Int("units", 4, 64, step=4)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units),  # the CSV has 8 features
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
        return model
""")


def test_failing_trials_are_explained_and_stop_the_search(tmp_path, cli):
    (tmp_path / "model.py").write_text(BROKEN_MODEL)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "broken", "hypermodel": "model.py:build",
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"max_trials": 6, "max_consecutive_failed_trials": 2},
        "fit": {"epochs": 1}, "confirm": {"enabled": False}, "cluster": {"workers": 1}}))
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "error: the search stopped: Number of consecutive failures exceeded the limit of 2."]
    # the live view (plain lines) shows the latest failure (two may end between two of its polls)
    assert re.search(r"last failure: trial [01] on tuner0: ValueError", result.stdout)

    run = tmp_path / "run"
    document = json.loads((run / "results.json").read_text())
    failed = [t for t in document["trials"] if t["status"] == "FAILED"]
    assert len(failed) == 2 and document["finished"] is True
    assert all(t["error_type"] == "ValueError" and "incompatible" in t["message"] for t in failed)
    table = cli("results", "--dir", "run", cwd=tmp_path, timeout=60)
    assert table.returncode == 0 and "ValueError" in table.stdout
    states = cli("status", "--dir", "run", "--format", "json", cwd=tmp_path, timeout=60)
    roles = json.loads(states.stdout)["roles"]
    assert all(r["state"] != "running" for r in roles)


