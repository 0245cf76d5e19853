"""A benchmark run writes its figures where --out says, and only there (before, every run also
rewrote benchmarks/results/<name>.json, so a quick look dirtied the checkout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_out_is_the_only_file_written(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("_common", None)
    import _common

    recorded = tmp_path / "results"
    monkeypatch.setattr(_common, "RESULTS", recorded)
    out = tmp_path / "elsewhere" / "quick.json"
    assert _common.save({"ratio": 1.5}, out, "overhead") == out
    assert json.loads(out.read_text()) == {"ratio": 1.5}
    assert not recorded.exists()
    assert _common.save({"ratio": 2.0}, None, "overhead") == recorded / "overhead.json"
    assert json.loads((recorded / "overhead.json").read_text()) == {"ratio": 2.0}
