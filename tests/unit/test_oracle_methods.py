"""The chief's cheaper oracle methods (`kt_compat/oracle_methods.py`, `cluster/chief/journal.py`) give Keras Tuner's own results, and the
state writer keeps working while handlers add trials.

Each equivalent is compared with Keras Tuner's method on the same oracle state: the random draws
(values and seed steps, with conditional hyperparameters), the consecutive-failure stop (when it
raises and with which message), the best trials (order and ties), and the trial.json files (an
ended trial's written at once; a running trial's before the oracle.json that names it).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path

import keras_tuner as kt
import pytest
from keras_tuner.src.engine import oracle as oracle_module
from keras_tuner.src.engine import trial as trial_module

from tunecluster.cluster.chief import journal as trial_journal
from tunecluster.cluster.chief.journal import TrialWrites
from tunecluster.kt_compat import oracle_methods
from tunecluster.kt_compat.oracle_lock import oracle_lock
from tunecluster.tuning.examples import comprehensive_space


def _conditional_space() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    layers = hp.Int("layers", 1, 3)
    for depth in range(1, 4):
        with hp.conditional_scope("layers", list(range(depth, 4))):
            hp.Int(f"units_{depth}", 4, 64, step=4)
    kind = hp.Choice("kind", ["dense", "wide"])
    with hp.conditional_scope("kind", ["wide"]):
        hp.Float("width", 0.1, 2.0, sampling="log")
    hp.Boolean("batchnorm")
    del layers, kind
    return hp


def _random_oracle(tmp_path, name: str, space: kt.HyperParameters, **kwargs):
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=500,
                                           seed=7, **kwargs)
    oracle._set_project_dir(str(tmp_path), name)
    oracle.verbose = 0
    oracle.update_space(space)
    return oracle


@pytest.mark.parametrize("space", [_conditional_space, comprehensive_space], ids=["conditional", "pima"])
def test_random_draws_are_keras_tuners(tmp_path, space):
    stock = _random_oracle(tmp_path, "stock", space())
    fast = _random_oracle(tmp_path, "fast", space())
    oracle_methods.install(fast, save_trial=TrialWrites(fast, lambda: oracle_lock(fast)), save=lambda: None)
    assert fast._random_values is not type(fast)._random_values
    for _ in range(60):
        expected, got = stock._random_values(), fast._random_values()
        assert got == expected and list(got) == list(expected)
        assert fast._seed_state == stock._seed_state
        stock._tried_so_far.add(stock._compute_values_hash(expected))
        fast._tried_so_far.add(fast._compute_values_hash(got))


def test_consecutive_failures_stop_at_the_same_trial_with_the_same_message(tmp_path):
    rng = random.Random(3)
    for attempt in range(20):
        oracle = _random_oracle(tmp_path, f"f{attempt}", _conditional_space(), max_consecutive_failed_trials=3)
        check = oracle_methods.ConsecutiveFailureCheck(oracle)
        for index in range(40):
            trial = trial_module.Trial(oracle.hyperparameters.copy(), trial_id=f"{index:03d}",
                                       status=rng.choice(["COMPLETED", "FAILED", "FAILED"]))
            trial.message = f"boom {index}"
            oracle.trials[trial.trial_id] = trial
            oracle.end_order.append(trial.trial_id)
            expected = got = None
            try:
                oracle_module.Oracle._check_consecutive_failures(oracle)
            except RuntimeError as exc:
                expected = str(exc)
            try:
                check()
            except RuntimeError as exc:
                got = str(exc)
            assert got == expected, (attempt, index)


def test_best_trials_match_keras_tuner_with_ties_and_padding(tmp_path):
    rng = random.Random(5)
    for direction in ("max", "min"):
        oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("loss", direction), max_trials=500, seed=1)
        oracle._set_project_dir(str(tmp_path), f"best-{direction}")
        best = oracle_methods.BestTrials(oracle, oracle.get_best_trials)
        for index in range(150):
            trial = trial_module.Trial(kt.HyperParameters(), trial_id=f"{index:03d}", status="RUNNING")
            oracle.trials[trial.trial_id] = trial
            if rng.random() < 0.8:  # ends now; scores drawn from a few values, so ties are common
                trial.status = rng.choice(["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"])
                if trial.status == "COMPLETED":
                    trial.score = rng.choice([0.5, 0.25, 0.75, 0.125, 0.625])
                oracle.end_order.append(trial.trial_id)
            for count in (1, 3, 10, 200):
                expected = [t.trial_id for t in oracle_module.Oracle.get_best_trials(oracle, count)]
                assert [t.trial_id for t in best(count)] == expected, (direction, index, count)


def _flush(writes) -> None:
    """What the chief's state writer does with the trial files (`StateWriter.flush_oracle`)."""
    journaled, journal = writes.take_journaled()
    writes.write(writes.capture() + journaled)
    writes.retire(journal)


def test_trial_files_wait_for_the_writer_and_new_and_ended_states_are_journaled_at_once(tmp_path):
    oracle = _random_oracle(tmp_path, "writes", comprehensive_space())
    writes = TrialWrites(oracle, lambda: oracle_lock(oracle))
    oracle_methods.install(oracle, save_trial=writes, save=lambda: None)  # the chief defers oracle.json itself
    project = tmp_path / "writes"

    def journal_lines() -> list[dict]:
        return [json.loads(line) for path, _ in trial_journal.journals(str(project))
                for line in Path(path).read_text().splitlines()]

    trial = oracle.create_trial("w0")
    path = project / f"trial_{trial.trial_id}" / "trial.json"
    # handed out: on disk at once as a journal line (a restarted chief knows every trial id)
    assert trial.status == "RUNNING" and not path.exists() and writes.pending() == 1
    assert [(e["trial_id"], e["state"]["status"]) for e in journal_lines()] == [(trial.trial_id, "RUNNING")]
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5}, step=0)
    assert not path.exists() and len(journal_lines()) == 1  # progress waits for the writer
    _flush(writes)
    saved = json.loads(path.read_text())
    assert saved["status"] == "RUNNING" and saved["metrics"]["metrics"] and writes.pending() == 0
    assert journal_lines() == []  # its states are in the file: the journal is gone
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5}, step=1)
    captured = writes.capture()  # the writer read the running state...
    trial.status = "COMPLETED"
    oracle.end_trial(trial)  # ...the trial ended before the writer wrote it: the journal has it
    assert [e["state"]["status"] for e in journal_lines()] == ["COMPLETED"]
    journaled, journal = writes.take_journaled()
    writes.write(captured + journaled)  # the older running state does not win over the ended one
    saved = json.loads(path.read_text())
    assert saved["status"] == "COMPLETED" and saved["score"] == 0.5 and writes.pending() == 0
    writes.retire(journal)
    assert trial_journal.journals(str(project)) == []
    # a new trial ends between the writer taking its first state and writing it: its file is
    # written by that write (the board, written next, names it), with the ended state
    fourth = oracle.create_trial("w2")
    fourth_path = project / f"trial_{fourth.trial_id}" / "trial.json"
    journaled, journal = writes.take_journaled()
    oracle.update_trial(fourth.trial_id, {"val_accuracy": 0.25}, step=0)
    fourth.status = "COMPLETED"
    oracle.end_trial(fourth)
    writes.write(writes.capture() + journaled)
    assert json.loads(fourth_path.read_text())["status"] == "COMPLETED"
    # ...and the next write, which takes the ended state from the journal, writes no older state
    fourth_path.write_text("{}")  # (a marker: the next write must leave it)
    _flush(writes)
    writes.retire(journal)
    assert fourth_path.read_text() == "{}" and writes.pending() == 0
    assert trial_journal.journals(str(project)) == []
    # a chief killed before its writer ran: the restarted one replays the journal into the files
    second = oracle.create_trial("w1")
    third = oracle.create_trial("w0")
    oracle.update_trial(second.trial_id, {"val_accuracy": 0.75}, step=0)
    second.status = "COMPLETED"
    oracle.end_trial(second)
    assert not (project / f"trial_{second.trial_id}" / "trial.json").exists()
    assert trial_journal.replay_journals(str(project)) == 2
    replayed = json.loads((project / f"trial_{second.trial_id}" / "trial.json").read_text())
    assert replayed["status"] == "COMPLETED" and replayed["score"] == 0.75
    assert json.loads((project / f"trial_{third.trial_id}" / "trial.json").read_text())["status"] == "RUNNING"
    assert trial_journal.journals(str(project)) == []


def test_the_state_writer_keeps_up_while_handlers_add_trials(tmp_path, caplog):
    """Handlers create and end trials while the writer writes: no write fails, after each write
    every trial that work.json names has its trial.json, and so has every trial oracle.json names
    (a restarted chief reloads from them), and the results rows reused between writes equal rows
    built from scratch."""
    from tunecluster.cluster.chief import Chief, ControlService
    from tunecluster.core.network import free_port
    from tunecluster.core.rundir import RunDir
    from tunecluster.cluster.auth import Security
    from tunecluster.tuning.spec import Experiment

    spec = Experiment.model_validate({"name": "race", "tuner": {"kind": "random", "max_trials": 100000},
                                      "cluster": {"workers": 4}})
    chief = Chief(spec, RunDir(tmp_path), "127.0.0.1", free_port(), security=Security(token="t"))
    chief.start()
    try:
        control = ControlService(chief.servicer, chief.book, chief.snapshot)
        control.SetSpace({"hyperparameters": comprehensive_space().get_config()})
        stop = threading.Event()
        writes, errors = [], []

        project = chief.run.kt_project(spec.name)

        def writer():
            while not stop.is_set():
                try:
                    chief.write_state(final=False)
                    # what a chief restarted now would read: every trial the board names has its file
                    named = {u["trial_id"] for u in json.loads(chief.run.work.read_text())["units"]}
                    missing = sorted(t for t in named if not (project / f"trial_{t}" / "trial.json").exists())
                    if missing:
                        errors.append(f"work.json names trials without trial.json: {missing[:5]}")
                except Exception as exc:  # noqa: BLE001 - the test reports it
                    errors.append(repr(exc))
                writes.append(1)

        def worker(name):
            while not stop.is_set():
                work = control.NextWork({"tuner_id": name})
                if work["status"] != "RUNNING":
                    continue
                stop.wait(0.1)  # a training: the trial stays RUNNING while the writer writes
                control.WorkDone({"tuner_id": name, "key": work["key"], "ok": True,
                                  "result": {"best": {"val_accuracy": 0.5}, "last": {"val_accuracy": 0.5},
                                             "best_epoch": 0, "last_epoch": 0, "values": {}}})

        with caplog.at_level(logging.ERROR, logger="tunecluster.chief"):
            threads = [threading.Thread(target=writer)] + [threading.Thread(target=worker, args=(f"w{i}",))
                                                            for i in range(6)]
            for thread in threads:
                thread.start()
            # until enough trials and writes happened (a loaded machine needs longer than 6 s)
            deadline = time.monotonic() + 90
            threading.Event().wait(6.0)
            while time.monotonic() < deadline and (len(chief.oracle.trials) <= 60 or len(writes) < 3):
                threading.Event().wait(0.5)
            stop.set()
            for thread in threads:
                thread.join(30)
            chief.write_state(final=False)
        assert not errors and len(writes) >= 3
        assert not [r for r in caplog.records if "could not write" in r.getMessage()]
        oracle_file = chief.run.kt_project(spec.name) / "oracle.json"
        state = json.loads(oracle_file.read_text())
        named = set(state["start_order"]) | set(state["ongoing_trials"].values())
        assert len(named) > 50
        missing = [t for t in named if not (oracle_file.parent / f"trial_{t}" / "trial.json").exists()]
        assert not missing
        results = json.loads(chief.run.results_json.read_text())
        assert len(results["trials"]) == len(chief.oracle.trials)
        # the rows reused between writes are the rows built from scratch
        from tunecluster.tuning.results import results_document

        view, meta = chief.writer.oracle_view(), {k: dict(v) for k, v in chief.book.trial_meta.items()}
        assert chief.writer.rows_cache
        assert results_document(spec, view, meta, False, chief.servicer.work, rows_cache=chief.writer.rows_cache) == \
            results_document(spec, view, meta, False, chief.servicer.work)
        # ...and so is the file written from the rows' cached texts: json.dumps of the whole document
        chief.write_state(final=False)
        scratch = results_document(spec, chief.writer.oracle_view(), meta, False, chief.servicer.work)
        assert chief.run.results_json.read_text() == json.dumps(scratch, default=str) + "\n"
        assert json.loads(chief.run.work.read_text())["units"] == chief.servicer.work.board.to_dict()["units"]
        # a long search's results.csv trails results.json: at most every CSV_PERIOD_S, always at the end
        from tunecluster.cluster.chief import state_writer

        state_writer.CSV_EVERY_WRITE_UP_TO = 10
        try:
            chief.run.results_csv.unlink()
            chief.run.results_json.unlink()
            chief.write_state(final=False)
            assert chief.run.results_json.exists() and not chief.run.results_csv.exists()
            chief.write_state(final=True)
            assert chief.run.results_csv.read_text().count("\n") == len(chief.oracle.trials) + 1
        finally:
            state_writer.CSV_EVERY_WRITE_UP_TO = 1000
    finally:
        chief.stop()
