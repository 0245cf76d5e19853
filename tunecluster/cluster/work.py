"""The chief's board of work units: the trainings that workers run, their curves, and what they returned.

A trial of the search is `executions_per_trial` units (`"<trial>#<k>"`), handed to whichever
workers ask next, so the executions of one trial run side by side on several workers. After the
search, the confirmation stage adds `repeats` units (`"confirm:<trial>#<r>"`) for each of the top
configurations. Each unit carries its own seed (`tuning.seeds`) and its curve: the metrics of
each epoch, from the worker's heartbeats while it trains and from its result when it ends. The board only keeps the table
(pending units first come, first served; a unit taken back from a lost worker goes to the front);
the chief decides what a finished or failed unit means for the oracle (see `chief/work_service.py`). Pure
Python, saved in `<run>/work.json` so a restarted chief keeps the finished executions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Optional

from tunecluster.core.pacing import pause_point
from tunecluster.core.seeds import CONFIRM, SEARCH, training_seed

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
SAVE_CHUNK = 1000  # units copied per hold of the board's lock when it is saved


@dataclass
class Unit:
    key: str
    kind: str  # SEARCH or CONFIRM
    trial_id: str
    index: int
    seed: int
    state: str = PENDING
    worker: Optional[str] = None
    started: Optional[float] = None
    ended: Optional[float] = None
    attempts: int = 0
    result: Optional[dict] = None
    error: Optional[str] = None
    curve: list = field(default_factory=list)  # each epoch's metrics (epoch k at index k-1; None: not heard)
    stop_at: Optional[int] = None  # the epoch at which the chief told its worker to stop (early stopping)


UNIT_FIELDS = tuple(f.name for f in fields(Unit))


def unit_dict(unit: Unit) -> dict:
    return {name: getattr(unit, name) for name in UNIT_FIELDS}


def unit_key(kind: str, trial_id: str, index: int) -> str:
    return f"{trial_id}#{index}" if kind == SEARCH else f"confirm:{trial_id}#{index}"


@dataclass
class Board:
    experiment_seed: Optional[int]
    executions: int = 1
    units: dict[str, Unit] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # pending units, the next to hand out first
    confirm_started: bool = False
    confirm_trials: list[str] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    # indexes kept beside `units`, so that no call scans every unit of a long search
    _by_trial: dict[tuple[str, str], dict[str, Unit]] = field(default_factory=dict, repr=False, compare=False)
    _running: dict[str, Unit] = field(default_factory=dict, repr=False, compare=False)
    _by_worker: dict[str, dict[str, Unit]] = field(default_factory=dict, repr=False, compare=False)
    _pending_kinds: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    # --- units --------------------------------------------------------------------------------
    def add_trial(self, trial_id: str) -> list[Unit]:
        """A new (or retried) search trial: `executions` fresh pending units."""
        with self.lock:
            self.drop_trial(trial_id, SEARCH)
            units = [self._add(SEARCH, trial_id, k) for k in range(self.executions)]
            return units

    def add_confirmation(self, trial_ids: list[str], repeats: int) -> list[Unit]:
        with self.lock:
            self.confirm_started = True
            self.confirm_trials = list(trial_ids)
            return [self._add(CONFIRM, t, r) for t in trial_ids for r in range(repeats)]

    def _add(self, kind: str, trial_id: str, index: int) -> Unit:
        unit = Unit(unit_key(kind, trial_id, index), kind, trial_id, index,
                    training_seed(self.experiment_seed, trial_id, index, kind))
        self._index(unit)
        self.order.append(unit.key)
        self._pending_kinds[kind] = self._pending_kinds.get(kind, 0) + 1
        return unit

    def _index(self, unit: Unit) -> None:
        self.units[unit.key] = unit
        self._by_trial.setdefault((unit.kind, unit.trial_id), {})[unit.key] = unit
        if unit.state == RUNNING:
            self._run(unit)

    def _run(self, unit: Unit) -> None:
        self._running[unit.key] = unit
        self._by_worker.setdefault(str(unit.worker), {})[unit.key] = unit

    def _not_running(self, unit: Unit) -> None:
        """Out of the running indexes (call before the unit's worker changes)."""
        self._running.pop(unit.key, None)
        held = self._by_worker.get(str(unit.worker))
        if held is not None:
            held.pop(unit.key, None)
            if not held:
                del self._by_worker[str(unit.worker)]

    def _unindex(self, unit: Unit) -> None:
        self.units.pop(unit.key, None)
        self._not_running(unit)
        same = self._by_trial.get((unit.kind, unit.trial_id))
        if same is not None:
            same.pop(unit.key, None)
            if not same:
                del self._by_trial[(unit.kind, unit.trial_id)]

    def drop_trial(self, trial_id: str, kind: str = SEARCH) -> list[Unit]:
        """Forget a trial's units (it failed, or is retried from the start); returns the running ones."""
        with self.lock:
            gone = list(self._by_trial.get((kind, trial_id), {}).values())
            for unit in gone:
                self._unindex(unit)
                if unit.state == PENDING and unit.key in self.order:
                    self.order.remove(unit.key)
                    self._pending_kinds[kind] -= 1
            return [u for u in gone if u.state == RUNNING]

    def take(self, worker: str, key: Optional[str] = None) -> Optional[Unit]:
        """Hand the next pending unit (or `key`) to `worker`."""
        with self.lock:
            if key is None:
                if not self.order:
                    return None
                key = self.order[0]
            unit = self.units.get(key)
            if unit is None or unit.state != PENDING:
                return None
            self.order.remove(key)
            self._pending_kinds[unit.kind] -= 1
            unit.state, unit.worker, unit.started, unit.ended = RUNNING, worker, time.time(), None
            unit.attempts += 1
            self._run(unit)
            return unit

    def give_back(self, key: str) -> Optional[Unit]:
        """A running unit goes back to the front of the queue (its worker was lost or stopped)."""
        with self.lock:
            unit = self.units.get(key)
            if unit is None or unit.state != RUNNING:
                return None
            self._not_running(unit)
            unit.state, unit.worker, unit.started = PENDING, None, None
            self.order.insert(0, key)
            self._pending_kinds[unit.kind] = self._pending_kinds.get(unit.kind, 0) + 1
            return unit

    def settle_ended(self, trial_id: str, state: str) -> list[str]:
        """A trial the oracle has ended (a restarted chief found its end in the journal, newer
        than the saved board): its search units still pending or running are closed as `state`
        (their result went into the trial before the board was saved again); returns their keys."""
        closed = []
        with self.lock:
            for unit in list(self._by_trial.get((SEARCH, trial_id), {}).values()):
                if unit.state == PENDING:
                    if unit.key in self.order:
                        self.order.remove(unit.key)
                        self._pending_kinds[SEARCH] -= 1
                elif unit.state != RUNNING:
                    continue
                self._not_running(unit)
                unit.state, unit.ended = state, unit.ended or time.time()
                closed.append(unit.key)
        return closed

    def record_epoch(self, key: str, worker: str, epoch: int, metrics: dict) -> Optional[Unit]:
        """A running unit's epoch, as its worker's heartbeat reported it (None: not its unit)."""
        with self.lock:
            unit = self.units.get(key)
            if unit is None or unit.state != RUNNING or unit.worker != worker or epoch < 1:
                return None
            curve = list(unit.curve)  # replaced, never changed in place (the writer reads it unlocked)
            curve.extend([None] * (epoch - len(curve)))
            curve[epoch - 1] = metrics
            unit.curve = curve
            return unit

    def finish(self, key: str, result: dict) -> Optional[Unit]:
        """A unit's result; the curve it carries (every epoch, from the training's history) is
        the unit's curve from now on."""
        result = dict(result)
        curve = result.pop("curve", None)
        extra = {"curve": list(curve)} if curve is not None else {}
        return self._close(key, DONE, result=result, **extra)

    def fail(self, key: str, error: str) -> Optional[Unit]:
        return self._close(key, FAILED, error=error)

    def _close(self, key: str, state: str, **fields) -> Optional[Unit]:
        with self.lock:
            unit = self.units.get(key)
            if unit is None or unit.state != RUNNING:
                return None
            self._not_running(unit)
            unit.state, unit.ended = state, time.time()
            for name, value in fields.items():
                setattr(unit, name, value)
            return unit

    # --- questions ------------------------------------------------------------------------------
    def of_trial(self, trial_id: str, kind: str = SEARCH) -> list[Unit]:
        with self.lock:
            return sorted(self._by_trial.get((kind, trial_id), {}).values(), key=lambda u: u.index)

    def trial_done(self, trial_id: str) -> bool:
        units = self.of_trial(trial_id)
        return bool(units) and all(u.state == DONE for u in units)

    def has_pending(self, kind: Optional[str] = None) -> bool:
        with self.lock:
            if kind is None:
                return bool(self.order)
            return self._pending_kinds.get(kind, 0) > 0

    def running(self, kind: Optional[str] = None) -> list[Unit]:
        with self.lock:
            return [u for u in self._running.values() if kind is None or u.kind == kind]

    def running_for(self, worker: str) -> list[Unit]:
        """The units `worker` runs (an index: no scan of every running unit, which at 10,000
        workers cost each call of each worker milliseconds)."""
        with self.lock:
            return list(self._by_worker.get(str(worker), {}).values())

    def confirmation_done(self) -> bool:
        with self.lock:
            confirm = [u for u in self.units.values() if u.kind == CONFIRM]
            return self.confirm_started and all(u.state in (DONE, FAILED) for u in confirm)

    # --- saving -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        head, units = self.save_parts()
        # shallow: dataclasses.asdict deep-copies every result (most of the chief's writer time)
        head["units"] = units
        return head

    def save_parts(self) -> tuple[dict, list[dict]]:
        """The board's head (units: None) and each unit's fields as a dict, a shallow copy (a
        unit's result and curve are replaced, never changed in place). The head and the unit
        keys are read in one hold of the lock, the units copied in chunks of SAVE_CHUNK with the
        lock let go between them: copying 6,000 units in one hold kept every handler waiting
        16-48 ms at 1,000 workers. A unit copied later may be newer than the head's `order`:
        harmless, a restarted chief keeps in `order` only the units still pending. Units added
        after the keys were read are left to the next save."""
        with self.lock:
            keys = list(self.units)
            head = {"experiment_seed": self.experiment_seed, "executions": self.executions, "units": None,
                    "order": list(self.order), "confirm_started": self.confirm_started,
                    "confirm_trials": list(self.confirm_trials)}
        units: list[dict] = []
        for start in range(0, len(keys), SAVE_CHUNK):
            with self.lock:
                for key in keys[start:start + SAVE_CHUNK]:
                    unit = self.units.get(key)  # the newest unit of the key (a retried trial's are new)
                    if unit is not None:
                        units.append(unit.__dict__.copy())
            pause_point()
        return head, units

    @classmethod
    def from_dict(cls, data: dict, experiment_seed: Optional[int], executions: int) -> "Board":
        board = cls(experiment_seed, executions)
        for raw in data.get("units", []):
            board._index(Unit(**raw))
        board.order = [k for k in data.get("order", []) if k in board.units and board.units[k].state == PENDING]
        for key in board.order:
            kind = board.units[key].kind
            board._pending_kinds[kind] = board._pending_kinds.get(kind, 0) + 1
        board.confirm_started = bool(data.get("confirm_started"))
        board.confirm_trials = list(data.get("confirm_trials", []))
        return board
