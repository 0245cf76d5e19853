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
        from tunecluster.cluster.chief.journal import replay_journals

        replay_journals(str(project))  # what the restarted chief does first (it finds nothing more then)
        for unit in board["units"]:  # what the restarted chief reads
            if unit["state"] == "done":
                state = json.loads((project / f"trial_{unit['trial_id']}" / "trial.json").read_text())
                assert state["status"] == "COMPLETED", unit["key"]
        ended = {path.parent.name.removeprefix("trial_") for path in project.glob("trial_*/trial.json")
                 if json.loads(path.read_text())["status"] == "COMPLETED"}
        # the board is saved after the trials: units it shows running can belong to trials that
        # ended since (their end is in the journal)
        stale = [u["key"] for u in board["units"] if u["state"] != "done" and u["trial_id"] in ended]

        chief.start()
        second = _run_workers(chief, 2.0)
        for thread in second["threads"]:
            thread.join(20)
        assert len(second["done"]) > 100
        assert len(second["refused"]) <= 2, second["refused"][:10]  # at most the units held at the kill
        assert "resumed the search" in chief.log_text()
        again = sorted({key for key in second["done"] if key.split("#")[0] in ended})
        assert not again, f"trials that had ended ran again: {again} (stale units on the board: {stale})"
        chief.process.terminate()  # SIGTERM: the chief writes everything and exits
        chief.process.wait(30)
        end_order = json.loads((project / "oracle.json").read_text())["end_order"]
        assert len(end_order) == len(set(end_order)), "a trial ended twice"
    finally:
        chief.stop()


def test_a_trial_newer_than_the_saved_board_runs_again(tmp_path):
    """The chief saves the work board after oracle.json: a chief killed between the two leaves an
    oracle.json holding a trial whose executions the board does not know. The restarted chief
    queues that trial again (it used to hold it for executions nobody could run: the search never
    ended), and every trial still ends exactly once."""
    spec = {"name": "gap", "tuner": {"kind": "random", "max_trials": 3}, "cluster": {"workers": 1},
            "confirm": {"enabled": False}}
    chief = ChiefProcess(tmp_path, spec).start()
    try:
        worker = RawWorker(chief.address, "w0", chief.token)
        worker.control.call("SetSpace", hyperparameters=comprehensive_space().get_config())
        unit = worker.control.call("NextWork", tuner_id="w0")
        assert unit["key"] == "0#0", unit
        project = chief.run / "kt" / "gap"

        def saved() -> bool:  # (the board may or may not have trial 0's unit yet: it is saved after)
            try:
                oracle = json.loads((project / "oracle.json").read_text())
                json.loads((chief.run / "work.json").read_text())
            except (FileNotFoundError, ValueError):
                return False
            return "0" in oracle["ongoing_trials"].values()

        deadline = time.time() + 10
        while not saved():
            assert time.time() < deadline, "the chief never saved trial 0"
            time.sleep(0.05)
        chief.stop()  # SIGKILL; then make the board what it was just before trial 0 got its units
        # (it may be so already: the writer read the board before the trial was made)
        board = json.loads((chief.run / "work.json").read_text())
        board["units"] = [u for u in board["units"] if u["trial_id"] != "0"]
        board["order"] = [k for k in board["order"] if not k.startswith("0#")]
        (chief.run / "work.json").write_text(json.dumps(board))

        chief.start()
        worker = RawWorker(chief.address, "w0", chief.token)
        ran = []
        unit = worker.control.call("NextWork", tuner_id="w0")
        while unit.get("status") == "RUNNING":
            ran.append(unit["key"])
            reply = worker.control.call("WorkDone", tuner_id="w0", key=unit["key"], ok=True, result=RESULT, next=True)
            assert reply["accepted"], reply
            unit = reply.get("next") or worker.control.call("NextWork", tuner_id="w0")
        assert unit["status"] == "STOPPED" and sorted(ran) == ["0#0", "1#0", "2#0"], (unit, ran)
        chief.process.terminate()  # (it would wait for a worker to export the best model) SIGTERM: it saves all
        chief.process.wait(30)
        end_order = json.loads((project / "oracle.json").read_text())["end_order"]
        assert sorted(end_order) == ["0", "1", "2"], end_order
    finally:
        chief.stop()
