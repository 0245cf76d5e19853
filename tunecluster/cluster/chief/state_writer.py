"""What the chief writes for everyone else: the oracle's files (trial.json files, oracle.json),
the work board (work.json), progress.json (the live view's source) and results.json/.csv.

Keras Tuner rewrites oracle.json (which grows with the trial count) on every CreateTrial, EndTrial
and space update, and a trial's trial.json on CreateTrial, on each UpdateTrial and on EndTrial,
under the oracle lock: the largest cost of the chief per trial. Here (`defer_oracle_saves`) the
oracle's `save()` only marks it dirty, and trial.json files go through the journal
(`journal.TrialWrites`); this writer writes them at most every ~0.5 s (the trials first, then
oracle.json, then the work board), and always at the end and on SIGTERM. A chief killed with
SIGKILL loses at most the last ~0.5 s of running trials' progress and of oracle.json;
`recovery.hold_for_their_workers` repairs that from the trial files.

The documents are built from copies, outside the chief's locks, so that no RPC waits for them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from types import SimpleNamespace
from typing import Callable, Optional

from tunecluster.cluster.chief.book import SearchBook
from tunecluster.cluster.chief.book_journal import BookJournal
from tunecluster.cluster.chief.journal import TrialWrites
from tunecluster.cluster.leases import Leases
from tunecluster.core.pacing import pacing, pause_point
from tunecluster.core.rundir import RunDir, write_atomic, write_json
from tunecluster.kt_compat import oracle_methods, oracle_state
from tunecluster.kt_compat.oracle_lock import oracle_lock
from tunecluster.tuning.results import best_trial_summary, count_statuses, results_document, write_results
from tunecluster.tuning.spec import Experiment

log = logging.getLogger("tunecluster.chief")

INDENTED_UP_TO = 300  # trials: final state files of longer searches are written compact
CSV_EVERY_WRITE_UP_TO = 1000  # trials: a longer search's results.csv is rewritten at most every CSV_PERIOD_S
CSV_PERIOD_S = 10.0


class StateWriter:
    """Writes the chief's state files (see the module docstring); `loop` is the writer thread."""

    def __init__(self, spec: Experiment, run: RunDir, book: SearchBook, leases: Leases, chief_address: str):
        self.spec, self.run, self.book, self.leases = spec, run, book, leases
        self.chief_address = chief_address
        self.oracle = None
        self.servicer = None  # set by the chief once it serves (the work board lives there)
        self._oracle_dirty = threading.Event()
        self._save_oracle_now: Optional[Callable[[], None]] = None  # the oracle's own save
        self._trial_writes: Optional[TrialWrites] = None  # trial.json files, through the journal
        self.rows_cache: dict = {}  # results.json rows of unchanged trials, between writes
        self.unit_texts = UnitTexts()  # work.json's units, encoded again only when changed
        self._csv_written = 0.0  # monotonic time of the last results.csv write

    def defer_oracle_saves(self, oracle) -> None:
        """Install the cheaper oracle methods with this writer taking the oracle's writes."""
        self.oracle = oracle
        self._trial_writes = TrialWrites(oracle, lambda: oracle_lock(oracle))
        self._save_oracle_now = oracle_methods.install(oracle, save_trial=self._trial_writes,
                                                        save=self._oracle_dirty.set)

    def pending(self) -> bool:
        return self._oracle_dirty.is_set() or bool(self._trial_writes and self._trial_writes.pending())

    def flush_oracle(self, force: bool = False) -> None:
        """Write the marked trial.json files and oracle.json if they changed since the last write
        (or `force`). Both are read under the oracle lock, in one consistent state, and written
        outside it: trials first, so oracle.json never names a trial that has no file."""
        if self._save_oracle_now is None:
            return
        oracle_changed = force or self._oracle_dirty.is_set()
        if not oracle_changed and not self._trial_writes.pending():
            return
        trials = self._trial_writes.capture()  # each under the lock, not all at once
        with oracle_lock(self.oracle):
            self._oracle_dirty.clear()
            trials += self._trial_writes.capture(locked=True)  # created meanwhile
            ended, journal = self._trial_writes.take_journaled()  # every state oracle.json names
            # a copy of the state's lists and dicts (~1 ms at 6,000 trials); encoding it under
            # the lock held the handlers ~20 ms
            state = detached(self.oracle.get_state()) if oracle_changed else None
        self._trial_writes.write(trials + ended)
        if state is not None:
            write_atomic(oracle_state.oracle_file(self.oracle), json.dumps(state), fsync=False)
        self._trial_writes.retire(journal)  # its states are in their files now

    def oracle_view(self) -> SimpleNamespace:
        """What the state files read from the oracle, as copies: the handlers keep adding trials
        while they are written, and a Python loop over the live dict would fail ("dictionary
        changed size during iteration"). `dict()`/`list()` copy in one step under the GIL."""
        oracle = self.oracle
        return SimpleNamespace(trials=dict(oracle.trials), queued=list(oracle_state.queued(oracle)),
                               max_trials=oracle.max_trials, objective=oracle.objective)

    def snapshot(self, view: Optional[SimpleNamespace] = None) -> dict:
        """progress.json's content."""
        view = view or self.oracle_view()
        work = self.servicer.work
        counts, best = count_statuses(view.trials.values()), best_trial_summary(view, work.active_names)
        work_summary, warnings = work.summary(), list(work.warnings)
        # trials that continue another one (ASHA's promotions, Hyperband's later rounds)
        counts["promoted"] = sum(1 for t in view.trials.values() if "tuner/trial_id" in t.hyperparameters.values)
        with self.book.lock:
            workers = {k: dict(v) for k, v in sorted(self.book.workers.items())}
            counts["stopped_early"] = sum(1 for m in self.book.trial_meta.values() if m.get("stopped_early"))
            for unit in work.board.running():  # told to stop early, finishing its epoch
                if unit.stop_at is not None and unit.worker in workers:
                    workers[unit.worker]["state"] = "stopping early"
            return {
                "experiment": self.spec.name,
                "tuner": self.spec.tuner.kind,
                "objective": self.spec.tuner.objective,
                "direction": self.spec.tuner.direction,
                "max_trials": view.max_trials,
                "counts": counts,
                "best": best,
                "workers": workers,
                "queued": view.queued,
                "leases": self.leases.held(),
                "pacing": self.servicer.pacing.summary() if self.servicer.pacing is not None else None,
                "time_budget": self.servicer.budget.summary() if self.servicer.budget is not None else None,
                "requeued": len(self.book.requeue_events),
                "refused_results": self.book.refused_results,
                "last_failure": self.book.last_failure,
                "search_failed": self.book.search_failed,
                "export": {"state": self.book.export_state, "by": self.book.exporter,
                           "message": self.book.export_message},
                "started_at": self.book.started_at,
                "updated_at": time.time(),
                "finished": False,
                "chief_address": self.chief_address,
                "work": work_summary,
                "warnings": warnings,
            }

    def write_state(self, finished: bool = False, final: bool = True) -> None:
        """Marked trial.json files and oracle.json (when changed), the work board, progress.json
        and the results. `final=False` (the periodic writes during the search): compact JSON, no
        fsync; the atomic renames still leave whole files if the chief is killed."""
        # The board is read first and written last: a trial gets its units after the oracle
        # created (and marked) it, so the flush below writes every trial the board names, and
        # oracle.json too, before the board's file: a restarted chief knows all of them.
        board, units = self.servicer.work.board.save_parts()
        self.flush_oracle(force=final)
        view = self.oracle_view()
        snap = self.snapshot(view)
        snap["finished"] = finished
        with self.book.lock:
            meta = {trial_id: dict(entry) for trial_id, entry in self.book.trial_meta.items()}
            journaled = self.book.journal.rotate() if self.book.journal is not None else []
        try:
            self._write_files(board, units, snap, view, meta, finished, final)
        except BaseException:
            if self.book.journal is not None:
                self.book.journal.keep(journaled)  # still needed: results.json may not hold them
            raise
        BookJournal.retire(journaled)  # results.json holds what they held

    def _write_files(self, board: dict, units: list, snap: dict, view, meta: dict, finished: bool,
                     final: bool) -> None:
        row_texts: list[str] = []
        document = results_document(self.spec, view, meta, finished, work=self.servicer.work,
                                    rows_cache=self.rows_cache, row_texts=row_texts)
        # indented JSON takes json's pure-Python encoder: for a long search's final files
        # (megabytes) that would hold the chief's exit for seconds, so those stay compact
        compact = not final or len(view.trials) > INDENTED_UP_TO
        if compact:
            write_json(self.run.work, board, compact=True, fsync=final, long_list="units", items=self.unit_texts(units))
        else:
            write_json(self.run.work, board | {"units": units}, fsync=final)
        write_json(self.run.progress, snap, compact=not final, fsync=final)
        # results.csv (rebuilt whole: ~130 ms at 10,000 trials) trails results.json on long searches
        now = time.monotonic()
        csv_due = final or len(view.trials) <= CSV_EVERY_WRITE_UP_TO or now - self._csv_written >= CSV_PERIOD_S
        write_results(self.run, document, final=final, compact=compact, row_texts=row_texts, csv=csv_due)
        if csv_due:
            self._csv_written = now

    def loop(self, stop: threading.Event) -> None:
        """The writer thread: write when something changed, coalescing bursts."""
        while not stop.is_set():
            if self.book.dirty.wait(0.5) or self.pending():
                self.book.dirty.clear()
                started = time.monotonic()
                try:
                    with pacing():  # pauses in its loops: the handlers get the GIL at once
                        self.write_state(final=False)
                except Exception:  # never let the writer kill the chief
                    log.exception("could not write progress")
                # coalesce bursts of updates; a long write (many trials) spaces the next ones
                # out so that the writer never takes more than about a tenth of the chief's time
                stop.wait(min(5.0, max(0.3, 9 * (time.monotonic() - started))))


def detached(value):
    """`value` with every dict and list in it copied, the rest shared: an oracle's state holds
    its live lists and dicts (start_order, id_to_hash...), which the handlers change as soon as
    the lock is let go. Copies and the look at the items' types run in C (~0.3 ms at 6,000
    trials); only the containers inside are walked in Python."""
    if isinstance(value, dict):
        copied = dict(value)
        if _holds_containers(copied.values()):
            for key, item in copied.items():
                if isinstance(item, (dict, list)):
                    copied[key] = detached(item)
        return copied
    if isinstance(value, list):
        copied = list(value)
        if _holds_containers(copied):
            for n, item in enumerate(copied):
                if isinstance(item, (dict, list)):
                    copied[n] = detached(item)
        return copied
    return value


def _holds_containers(items) -> bool:
    """Whether a dict or list (or a subclass: run_times is a defaultdict) is among `items`; the
    set of their types is built in C."""
    return any(issubclass(kind, (dict, list)) for kind in set(map(type, items)))


class UnitTexts:
    """work.json's units as JSON text, a unit encoded again only when it changed. At 1,000
    workers the board holds a unit per trial (6,000 after a minute of 10 s trials) and nearly all
    of them are done; encoding each on every pass was ~20 us of the GIL per unit. The units come
    as the board's copies (dicts of their fields): a unit's scalars are compared, its result and
    curve by identity (both are replaced on a change, never changed in place; the kept text's
    mark holds them, so their ids cannot be reused)."""

    def __init__(self):
        self._texts: dict[str, tuple] = {}  # key -> (scalars, result, curve, text)

    def __call__(self, units: list[dict]) -> list[str]:
        kept, texts = {}, []
        for unit in units:
            pause_point()
            scalars = (unit["state"], unit["worker"], unit["started"], unit["ended"], unit["attempts"],
                       unit["error"], unit["stop_at"])
            cached = self._texts.get(unit["key"])
            if (cached is not None and cached[0] == scalars and cached[1] is unit["result"]
                    and cached[2] is unit["curve"]):
                text = cached[3]
            else:
                text = json.dumps(unit, default=str)
            kept[unit["key"]] = (scalars, unit["result"], unit["curve"], text)
            texts.append(text)
        self._texts = kept
        return texts
