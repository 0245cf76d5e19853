"""Chaos (pytest -m chaos; its own CI step): a local search of 12 short trials with 2 workers
during which a worker is SIGKILLed mid-trial 3 times and the chief once. The search must end with
exactly 12 COMPLETED trials, none counted twice, every completed result kept, and every process
gone within 15 s after the last trial ends. The wall time is reported against an undisturbed run
of the same search (benchmarks/faults.py prints the full lost-work and recovery figures)."""

from __future__ import annotations

import json

import pytest

import chaos_scenario

pytestmark = pytest.mark.chaos


def test_search_survives_killed_workers_and_chief(tmp_path):
    calm = chaos_scenario.undisturbed(tmp_path / "calm")
    assert calm.exit_code == 0, calm.output[-3000:]
    rough, before_chief_kill = chaos_scenario.with_faults(tmp_path / "rough", worker_kills=3, chief_kill_after=2)
    report = {"undisturbed": calm.summary(), "with_faults": rough.summary(),
              "slowdown": round(rough.wall_s / calm.wall_s, 2)}
    print("\nchaos report:", json.dumps(report, indent=2))

    assert rough.exit_code == 0, rough.output[-4000:]
    assert sum(k["role"] != "chief" for k in rough.kills) == 3 and sum(k["role"] == "chief" for k in rough.kills) == 1
    trials = rough.results["trials"]
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert [t["status"] for t in trials] == ["COMPLETED"] * 12
    assert len(rough.end_order) == 12 and len(set(rough.end_order)) == 12  # each trial ended once
    scores = {t["trial_id"]: t["score"] for t in trials}
    assert all(score is not None for score in scores.values())
    for trial_id, score in before_chief_kill.items():  # nothing completed before the chief died was lost
        assert scores[trial_id] == score
    assert rough.gone_after_last_trial_s <= 15, rough.summary()
    assert "restarting it with the same id" in rough.output
    assert (rough.results and rough.results["finished"]) is True
