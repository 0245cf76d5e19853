"""The chief's own bookkeeping beside the oracle: who ran which trial and when, each worker's
latest heartbeat (trial, epoch, metrics), failures, take-backs, the export's state.

Read by the state writer for progress.json and results.json; every change sets `dirty`, which
wakes the writer.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from tunecluster.cluster.chief.book_journal import BookJournal


class SearchBook:
    """The chief's own bookkeeping beside the oracle: who ran what and when, live progress."""

    def __init__(self, journal: Optional[BookJournal] = None):
        self.lock = threading.RLock()
        self.journal = journal  # each trial entry's change, on disk before the call returns
        self._changes = 0  # entries numbered as they change (the journal's lines may be written out of order)
        self.trial_meta: dict[str, dict] = {}
        self.workers: dict[str, dict] = {}
        self.tunecluster_workers: set[str] = set()
        self.export_state: Optional[str] = None  # None | "claimed" | "done" | "failed"
        self.exporter: Optional[str] = None
        # the one worker kept waiting while another exports, to take the export over if the
        # exporter is lost (the others leave at once: no idle fleet for a long final training)
        self.export_standby: Optional[str] = None
        self.export_message: Optional[str] = None
        self.last_failure: Optional[dict] = None
        self.search_failed: Optional[str] = None
        self.requeue_events: list[dict] = []
        self.refused_results = 0
        self.started_at = time.time()
        self.first_request_at: Optional[float] = None
        self.search_started_at: Optional[float] = None  # the first trial's start (tuner.max_time counts from it)
        self.dirty = threading.Event()

    def touch(self) -> None:
        self.dirty.set()

    def _entry(self, trial_id: str) -> Optional[tuple]:
        """(lock held) The trial's entry as it is now, numbered, for `_journal` once the lock is
        released (a file write under the lock would make every heartbeat wait for it)."""
        if self.journal is None:
            return None
        self._changes += 1
        return trial_id, self._changes, dict(self.trial_meta[trial_id])

    def _journal(self, entry: Optional[tuple]) -> None:
        if entry is not None:
            self.journal.append(*entry)

    def trial_started(self, trial_id: str, tuner_id: str) -> None:
        with self.lock:
            meta = self.trial_meta.setdefault(trial_id, {})
            meta.update(worker=tuner_id, started=time.time(), ended=None)
            if self.search_started_at is None:
                self.search_started_at = meta["started"]
            entry = self._entry(trial_id)
            worker = self.workers.setdefault(tuner_id, {})
            worker.update(trial=trial_id, epoch=None, metrics={}, state="running", last_seen=time.time())
        self._journal(entry)
        self.touch()

    def trial_ended(self, trial_id: str, status: str, stopped_early: Optional[int] = None,
                    at: Optional[float] = None) -> None:
        """`at`: when the oracle recorded the end (taken under its lock: a trial created after
        that moment may have counted this one, one created before it did not)."""
        with self.lock:
            meta = self.trial_meta.setdefault(trial_id, {})
            meta["ended"] = at or time.time()
            meta["status"] = status
            if stopped_early is not None:
                meta["stopped_early"] = stopped_early
            entry = self._entry(trial_id)
            worker = self.workers.get(meta.get("worker", ""))
            if worker is not None and worker.get("trial") == trial_id:
                worker.update(trial=None, epoch=None, state="idle")
        self._journal(entry)
        self.touch()

    def trial_requeued(self, trial_id: str, tuner_id: str, reason: str) -> None:
        with self.lock:
            meta = self.trial_meta.setdefault(trial_id, {})
            meta["requeues"] = meta.get("requeues", 0) + 1
            meta.update(ended=None, status="QUEUED")
            entry = self._entry(trial_id)
            worker = self.workers.get(tuner_id)
            if worker is not None and worker.get("trial") == trial_id:
                worker.update(trial=None, epoch=None, state="lost trial")
            self.requeue_events.append({"trial_id": trial_id, "worker": tuner_id, "reason": reason,
                                        "at": time.time()})
        self._journal(entry)
        self.touch()

    def note(self, request: dict) -> dict:
        with self.lock:
            meta = self.trial_meta.setdefault(str(request.get("trial_id")), {})
            meta["error_type"] = request.get("error_type")
            meta["message"] = request.get("message")
            entry = self._entry(str(request.get("trial_id")))
            self.last_failure = {
                "trial_id": request.get("trial_id"),
                "worker": request.get("tuner_id"),
                "error_type": request.get("error_type"),
                "message": request.get("message"),
            }
        self._journal(entry)
        self.touch()
        return {}

    def heartbeat(self, request: dict) -> dict:
        tuner_id = str(request.get("tuner_id"))
        with self.lock:
            self.tunecluster_workers.add(tuner_id)
            worker = self.workers.setdefault(tuner_id, {"state": "starting", "restarts": 0})
            if "pid" in request and worker.get("pid") not in (None, request["pid"]):
                worker["restarts"] = worker.get("restarts", 0) + 1  # a new process with this id
            for key in ("trial", "epoch", "epochs", "metrics", "execution", "pid", "host"):
                if key in request:
                    worker[key] = request[key]
            if request.get("state"):
                worker["state"] = request["state"]
            worker["last_seen"] = time.time()
        self.touch()
        return {"ok": True}


