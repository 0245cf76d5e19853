"""A restarted chief picks up where the last one stopped, from the run folder: Keras Tuner's
reload of oracle.json and the trials' files (after the journal was replayed into them, see
`journal.py`), the chief's bookkeeping from the last results.json, and the work board (work.json).

Keras Tuner's reload queues every trial that was running; here such a trial stays with the worker
that ran it, under a fresh lease, so a worker that kept training while the chief was away still
delivers its result (if it does not renew the lease, the trial is queued again). The states the
coalesced saves left behind are repaired: a trial that ended after oracle.json was saved stays
ended, a trial oracle.json never heard of is held or queued, and a work unit of a trial that has
ended is closed rather than run again (the trial would end twice).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from tunecluster.cluster.chief import book_journal
from tunecluster.cluster.chief.book import SearchBook
from tunecluster.cluster.chief.work_service import ONGOING_PREFIX
from tunecluster.cluster.leases import Leases
from tunecluster.cluster.work import DONE, FAILED, RUNNING, SEARCH, Board
from tunecluster.core.rundir import read_json
from tunecluster.kt_compat import oracle_state
from tunecluster.tuning.spec import Experiment

log = logging.getLogger("tunecluster.chief")


def hold_for_their_workers(oracle, oracle_file: Path, work_file: Path, leases: Leases) -> None:
    """Keras Tuner's reload queues every trial that was running. A worker that kept training
    while the chief was away should still deliver its result, so each such trial stays with
    its worker under a fresh lease; if that worker does not renew it, it is queued again."""
    queue = oracle_state.queued(oracle)
    try:
        ongoing = json.loads(oracle_file.read_text()).get("ongoing_trials", {})
    except (OSError, ValueError):
        return
    ended = ("COMPLETED", "FAILED", "INVALID")
    for tuner_id, trial_id in list(ongoing.items()):
        trial = oracle.trials.get(trial_id)
        if trial is not None and trial.status in ended:
            # oracle.json was saved before this trial ended (saves are coalesced): its
            # trial.json has the result; keep it ended
            ongoing.pop(tuner_id)
            while trial_id in queue:
                queue.remove(trial_id)
            if trial_id not in oracle.end_order:
                oracle.end_order.append(trial_id)
    on_board = {u.get("trial_id") for u in (read_json(work_file) or {}).get("units", [])
                if u.get("kind") == SEARCH}
    for tuner_id, trial_id in ongoing.items():
        if tuner_id.startswith(ONGOING_PREFIX):
            if trial_id not in on_board or trial_id not in queue or trial_id not in oracle.trials:
                # created after the saved board was read (the board is saved after
                # oracle.json): no execution of it is known, so it stays queued and runs anew
                continue
            # its executions are on the work board; the units that were running stay leased below
            queue.remove(trial_id)
            oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]
            oracle.trials[trial_id].status = "RUNNING"
            continue
        if trial_id in queue and trial_id in oracle.trials:
            queue.remove(trial_id)
            oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]
            oracle.trials[trial_id].status = "RUNNING"
            oracle.tuner_ids.add(tuner_id)
            leases.grant(trial_id, tuner_id, timed=True)
    # Trials started after the last oracle.json write (saves are coalesced): RUNNING in their
    # trial.json, unknown to oracle.json. With executions on the saved work board they are
    # held like the others; else they go back to the queue.
    known = {t.trial_id for t in oracle.ongoing_trials.values()} | set(queue)
    for trial_id, trial in sorted(oracle.trials.items()):
        if trial.status != "RUNNING" or trial_id in known:
            continue
        if trial_id not in oracle.start_order:
            oracle.start_order.append(trial_id)
        if trial_id in on_board:
            oracle.ongoing_trials[ONGOING_PREFIX + trial_id] = trial
        else:
            queue.append(trial_id)


def reload_book(book: SearchBook, results_json: Path, journal_folder: Optional[Path] = None) -> None:
    """On resume, keep who ran the earlier trials and when: the last results.json, then what the
    previous chief's book journal holds since (`book_journal.py`)."""
    from datetime import datetime

    document = read_json(results_json) or {}
    for row in document.get("trials", []):
        if row.get("status") == "QUEUED":
            continue
        meta = {k: row.get(k) for k in ("worker", "error_type", "message", "status")}
        meta["requeues"] = row.get("requeues", 0)
        if row.get("stopped_early"):
            meta["stopped_early"] = row["stopped_early"]
        for key in ("started", "ended"):
            meta[key] = datetime.fromisoformat(row[key]).timestamp() if row.get(key) else None
        book.trial_meta[row["trial_id"]] = meta
    for trial_id, meta in (book_journal.replay(journal_folder) if journal_folder else {}).items():
        if meta.get("status") == "QUEUED":
            book.trial_meta.pop(trial_id, None)  # as above: recovery queues it again
        else:
            book.trial_meta[trial_id] = meta
    starts = [m["started"] for m in book.trial_meta.values() if m.get("started")]
    if starts:
        book.search_started_at = min(starts)


def load_board(oracle, spec: Experiment, work_file: Path, leases: Leases) -> Board:
    """The work board: fresh, or the saved one of an interrupted run (its running units stay
    with their workers under a fresh lease, like trials)."""
    seed, executions = spec.tuner.seed, spec.tuner.executions_per_trial
    saved = read_json(work_file)
    if not saved:
        return Board(seed, executions)
    board = Board.from_dict(saved, seed, executions)
    # The board is saved after the trials' states, and a trial's end is in the journal the
    # moment it happens: a unit the board shows pending or running may belong to a trial
    # that ended since. It must not run again (the trial would end twice).
    settled = []
    for trial_id, trial in list(oracle.trials.items()):
        if trial.status in ("COMPLETED", "FAILED", "INVALID"):
            settled += board.settle_ended(trial_id, DONE if trial.status == "COMPLETED" else FAILED)
    if settled:
        log.info("the saved work board predates the end of %s: closed", ", ".join(settled))
    for unit in board.units.values():
        if unit.state == RUNNING and unit.worker:
            leases.grant(unit.key, unit.worker, timed=True)
    return board
