"""`benchmarks/chief_profile.py`: the chief's CPU per call by RPC type from a py-spy raw profile
(samples under an RPC's handler frame, the rest `other`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

RAW = """\
_worker (/srv/lib/thread.py:80);_call_behavior (/srv/lib/_server.py:500);Heartbeat (/srv/lib/control_service.py:30);snapshot (/srv/lib/book.py:9) 30
_worker (/srv/lib/thread.py:80);_call_behavior (/srv/lib/_server.py:500);WorkDone (/srv/lib/control_service.py:85);NextWork (/srv/lib/control_service.py:80);create_trial (/srv/lib/oracle.py:10) 50
run (/srv/lib/state_writer.py:40);dumps (/srv/lib/json.py:2) 20
not a sample line
"""


@pytest.fixture
def chief_profile(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("chief_profile", None)
    import chief_profile
    return chief_profile


def test_cpu_per_call_by_rpc_type(tmp_path, chief_profile):
    path = tmp_path / "profile.txt"
    path.write_text(RAW)
    split = chief_profile.cpu_by_rpc(path, {"Heartbeat": 300, "WorkDone": 100, "NextWork": 0}, cpu_seconds=2.0)
    # the outermost handler takes the sample: NextWork inside WorkDone's `next` is WorkDone's
    assert split["Heartbeat"] == {"share": 0.3, "calls": 300, "cpu_ms_per_call": 2.0}
    assert split["WorkDone"] == {"share": 0.5, "calls": 100, "cpu_ms_per_call": 10.0}
    assert split["NextWork"] == {"share": 0.0, "calls": 0, "cpu_ms_per_call": None}
    assert split["other"] == {"share": 0.2, "calls": None, "cpu_ms_per_call": None}


def test_summary_and_a_missing_profile(tmp_path, chief_profile):
    path = tmp_path / "profile.txt"
    path.write_text(RAW)
    summary = chief_profile.summary(path, top=3)
    assert summary["samples"] == 100
    assert summary["inclusive"]["_worker thread.py"] == 0.8
    assert summary["self"] == {"create_trial oracle.py": 0.5, "snapshot book.py": 0.3, "dumps json.py": 0.2}
    assert chief_profile.summary(tmp_path / "absent.txt") == {}
    assert chief_profile.cpu_by_rpc(tmp_path / "absent.txt", {"Heartbeat": 1}, 1.0) == {}


# py-spy 0.4 qualifies methods by their class and writes standard-library frames without a folder
RAW_QUALIFIED = """\
Thread._bootstrap (threading.py:1002);_call_behavior (/srv/lib/_server.py:500);_wrap.<locals>.handle (/srv/lib/control.py:40);ControlService.Heartbeat (/srv/lib/control_service.py:30) 25
Thread._bootstrap (threading.py:1002);_call_behavior (/srv/lib/_server.py:500);_wrap.<locals>.handle (/srv/lib/control.py:40);ControlService.WorkDone (/srv/lib/control_service.py:85);ControlService.NextWork (/srv/lib/control_service.py:80) 50
Thread._bootstrap (threading.py:1002);StateWriter.loop (/srv/lib/state_writer.py:40) 25
"""


def test_handlers_qualified_by_their_class_are_found(tmp_path, chief_profile):
    path = tmp_path / "profile.txt"
    path.write_text(RAW_QUALIFIED)
    split = chief_profile.cpu_by_rpc(path, {"Heartbeat": 250, "WorkDone": 100, "NextWork": 10}, cpu_seconds=1.0)
    per_call = {name: (entry["share"], entry["cpu_ms_per_call"]) for name, entry in split.items()}
    assert per_call == {"Heartbeat": (0.25, 1.0), "WorkDone": (0.5, 5.0), "NextWork": (0.0, 0.0), "other": (0.25, None)}
    summary = chief_profile.summary(path, top=3)
    assert summary["inclusive"] == {"Thread._bootstrap threading.py": 1.0, "_call_behavior _server.py": 0.75,
                                    "_wrap.<locals>.handle control.py": 0.75}
