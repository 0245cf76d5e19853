"""The real chief under 200 simulated workers: the Go load generator of benchmarks/loadgen speaks
the worker protocol (token, NextWork / WorkDone with `next`, heartbeats with epoch reports,
Finish / ExportDone) with 1 s trainings until the chief says STOPPED. Every trial the oracle
handed out must be COMPLETED exactly once in results.json, none lost, none run twice, and the
chief must exit 0 on its own. About a minute; the chaos tier (`pytest -m chaos`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from chief_process import ChiefProcess

GO = Path("/usr/local/go/bin/go")
LOADGEN_SRC = Path(__file__).resolve().parents[2] / "benchmarks" / "loadgen"
WORKERS = 200
TRIALS = 6000  # ~30 s of 1 s trainings for 200 workers at full speed; the chief, not the clock, sets the pace

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory) -> Path:
    if not GO.exists():
        pytest.skip(f"Go is not installed at {GO.parent}: the load generator (benchmarks/loadgen) is a Go program")
    binary = tmp_path_factory.mktemp("loadgen") / "loadgen"
    subprocess.run([str(GO), "build", "-o", str(binary), "."], cwd=LOADGEN_SRC, check=True, timeout=600,
                   env={**os.environ, "GOFLAGS": "-mod=mod"})
    return binary


def space_config() -> dict:
    """A space too large to run out of distinct trials (random search stops when it does)."""
    from keras_tuner.src.engine import hyperparameters as hp_module

    hps = hp_module.HyperParameters()
    hps.Float("learning_rate", 1e-5, 1e-1, sampling="log")
    hps.Int("units", 1, 100_000)
    hps.Choice("optimizer", ["adam", "sgd", "rmsprop"])
    return hps.get_config()


def test_every_trial_completes_exactly_once_with_200_simulated_workers(tmp_path, loadgen):
    spec = {"name": "simulated", "tuner": {"kind": "random", "max_trials": TRIALS, "seed": 1},
            "confirm": {"enabled": False}, "cluster": {"workers": WORKERS}}
    chief = ChiefProcess(tmp_path, spec, token="t").start()
    try:
        space = tmp_path / "space.json"
        space.write_text(json.dumps(space_config()))
        out = tmp_path / "loadgen.json"
        generator = subprocess.run(
            [str(loadgen), "-addr", chief.address, "-token", "t", "-workers", str(WORKERS), "-trial-seconds", "1",
             "-epochs", "2", "-ramp", "2", "-space", str(space), "-list-keys", "-max-duration", "300",
             "-out", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=400)
        assert generator.returncode == 0, generator.stderr[-3000:]
        assert chief.process.wait(60) == 0, chief.log_text()[-3000:]
    finally:
        chief.stop()
    report = json.loads(out.read_text())
    trials = report["trials"]
    # the generator's view: every training handed out was reported once and accepted
    assert trials["started"] == trials["finished"] == trials["distinct_started"] == TRIALS, trials
    assert (trials["started_twice"], trials["finished_twice"], trials["never_finished"]) == (0, 0, 0), trials
    assert (trials["refused"], trials["revoked"]) == (0, 0), trials
    # no call failed while the search ran; a simulated worker's last beats, sent after the chief
    # ended the search for it (" after the end"), race the chief's exit as a real worker's do
    failed_calls = {name: (row["errors"], row.get("error_codes")) for name, row in report["rpc"].items()
                    if row["errors"] and not name.endswith(" after the end")}
    assert not failed_calls, failed_calls
    assert {name for name in report["rpc"] if name.endswith(" after the end")} <= {"Heartbeat after the end"}
    assert report["workers_that_ran_trials"] == WORKERS
    # the chief's view: the same trials, each COMPLETED once, with the epoch reports' curve
    rows = chief.results()["trials"]
    ids = [row["trial_id"] for row in rows]
    assert len(ids) == len(set(ids)) == TRIALS
    assert {row["status"] for row in rows} == {"COMPLETED"}
    assert sorted(f"{trial_id}#0" for trial_id in ids) == report["finished_keys"]
    assert all(len(row["executions"][0]["curve"]) == 2 for row in rows)
