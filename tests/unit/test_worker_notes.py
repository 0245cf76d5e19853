"""A worker's notes about its trainings (a failed one, one taken back) go to its log through
logging, like the rest of the role's lines (before, they were printed to stdout)."""

from __future__ import annotations

from types import SimpleNamespace

from tunecluster.cluster.worker import tuner


def test_notes_go_through_the_worker_logger(monkeypatch, capsys):
    logged = []
    monkeypatch.setattr(tuner.log, "warning", lambda message, *args: logged.append(message % args))
    tuner.ClusterTuner._log(SimpleNamespace(tuner_id="tuner3"), "3#0 failed: ValueError: bad")
    assert logged == ["tuner3: 3#0 failed: ValueError: bad"]
    assert capsys.readouterr().out == ""
