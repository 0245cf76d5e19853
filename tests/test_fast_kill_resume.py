"""A chief SIGKILLed while trials end as fast as it can hand them out resumes into a consistent
search: every trial whose executions are done is COMPLETED in its trial.json once the journal of
ended trials is replayed (no older running state written over it), no trial is handed to two
workers in turn, and the search goes on.

Two raw workers speak tunecluster's own protocol (NextWork / WorkDone with `next`, no training),
so the chief's deferred trial.json writes race with trials ending hundreds of times a second."""

from __future__ import annotations

import json
import threading
import time

from chief_process import ChiefProcess, RawWorker

from tunecluster.tuning.examples import comprehensive_space

RESULT = {"best": {"val_accuracy": 0.5}, "last": {"val_accuracy": 0.5}, "best_epoch": 0, "last_epoch": 0,
          "values": {}}


def _run_workers(chief: ChiefProcess, seconds: float) -> dict:
    done, refused, stop = [], [], threading.Event()

    def work(name: str) -> None:
        worker = RawWorker(chief.address, name, chief.token)
        unit = None
        while not stop.is_set():
            try:
                if unit is None:
                    unit = worker.control.call("NextWork", tuner_id=name)
                if unit.get("status") != "RUNNING":
                    unit = None
                    time.sleep(0.05)
                    continue
                reply = worker.control.call("WorkDone", tuner_id=name, key=unit["key"], ok=True, result=RESULT,
                                            next=True)
            except Exception:  # noqa: BLE001 - the chief was killed under us
                return
            (done if reply.get("accepted") else refused).append(unit["key"])
            unit = reply.get("next")

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    return {"threads": threads, "done": done, "refused": refused}


def test_a_chief_killed_mid_burst_resumes_consistently(tmp_path):
    spec = {"name": "burst", "tuner": {"kind": "random", "max_trials": 100000}, "cluster": {"workers": 2},
            "confirm": {"enabled": False}}
    chief = ChiefProcess(tmp_path, spec).start()
    try:
        RawWorker(chief.address, "setup", chief.token).control.call("SetSpace",
                                                                   hyperparameters=comprehensive_space().get_config())
        first = _run_workers(chief, 3.0)
        chief.stop()  # SIGKILL while trials keep ending
        for thread in first["threads"]:
            thread.join(20)
        assert len(first["done"]) > 100

        project = chief.run / "kt" / "burst"
        board = json.loads((chief.run / "work.json").read_text())
        from tunecluster.cluster.oracle_speedups import replay_journals

        replay_journals(str(project))  # what the restarted chief does first (it finds nothing more then)
        for unit in board["units"]:  # what the restarted chief reads
            if unit["state"] == "done":
                state = json.loads((project / f"trial_{unit['trial_id']}" / "trial.json").read_text())
                assert state["status"] == "COMPLETED", unit["key"]

        chief.start()
        second = _run_workers(chief, 2.0)
        for thread in second["threads"]:
            thread.join(20)
        assert len(second["done"]) > 100
        assert len(second["refused"]) <= 2, second["refused"][:10]  # at most the units held at the kill
        assert "resumed the search" in chief.log_text()
    finally:
        chief.stop()
