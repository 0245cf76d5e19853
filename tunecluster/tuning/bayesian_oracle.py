"""A Bayesian oracle whose suggestions never hold Keras Tuner's oracle lock while the model fits.

Keras Tuner's `BayesianOptimizationOracle.create_trial` runs under `@synchronized`, i.e. under
the oracle's global lock (see `kt_compat.oracle_lock`), and refits its Gaussian
process inside it: every `update_trial`, `end_trial`, `get_best_trials` of every other worker
waits for the whole suggestion. `BayesianOptimizationOracle` here (a subclass, same arguments,
same saved state) does the slow part outside that lock:

1. under the lock: the cases that need no model (the worker's own running trial, a trial queued
   for retry, `max_trials` reached, the random initial points) are answered at once by Keras
   Tuner's own `create_trial`; otherwise it takes a snapshot: the completed trials' vectors and
   scores (cached per trial) and the running trials' vectors;
2. without the lock, and in a child process (`gp_process`, so that not even the GIL is taken from
   the chief's other RPCs): fit the Gaussian process and minimise `mean - beta * std`
   (`gp_suggest`); running trials count as observations at the previous model's `mean + std`, as
   in Keras Tuner; with trials running or hundreds completed, the kernel is optimised on a sample
   of the completed trials only and the model holds at most 2,000 observations (`gp_process`).
   Should the child fail, the chief computes in its own process from then on;
3. under the lock again: Keras Tuner's own `create_trial` commits the trial (trial id, recorded
   values, saved state), taking the suggestion through `populate_space`; a suggestion that
   duplicates a trial that exists by then is replaced by the next-best candidate (or random
   values), a retry that was queued meanwhile is handed out first, `max_trials` is re-checked.

Model fits are made one at a time (their own lock, not the oracle's), each in a thread of its
own, and one fit serves every worker waiting for a suggestion: the fit proposes a batch of k points
(`gp_batch`: each next point chosen after the previous ones were added as pending observations at
the model's mean + std, Keras Tuner's rule for running trials, with the kernel fixed). k is the
number of askers waiting when its snapshot is taken, plus the askers expected while the next fit
runs (`prefetch` = 1.5 times the longest of the last 8 fits, at the rate of asks over the last
10 s: a fit that re-optimises the kernel takes several times longer than the others, so that they
find a point ready instead of waiting for a fit of their own), capped at `max_batch` (256). An
asker takes the batch's next point, committed through Keras Tuner's `create_trial` under the oracle
lock with the same duplicate check (step 3). When no point is there, the asker starts a fit (unless
one is running) and waits for it at most `ask_wait` (2) seconds; then it is answered IDLE and its
worker asks again after a short back-off. So a gRPC thread of the chief never waits through a long
fit: at a thousand workers, askers waiting inside fits held every thread of the chief's pool and
its heartbeats queued behind them. When an asker takes a point and the batch's fresh points would
run out before a fit started now ended (fewer left than the askers expected during one fit), a fit
starts ahead (`refill`), for the askers to come. With one asker at a time (a serial search: one
worker asks; or trials much longer than a fit) k is 1 and the suggestion is exactly the single one
of before, made while the asker waits (a fit shorter than `ask_wait`).

Staleness rule: the askers that were waiting when a batch's snapshot was taken take its points
whatever completed meanwhile (the points were computed for them; a serial suggestion made at that
moment would not have seen those results either). An asker that came later takes a left-over point
only while the batch is fresh: its fit ended at most `batch_max_age` (10) seconds ago, and the trials
completed since its snapshot are at most `stale_fraction` (10 %) of those it saw, rounded down: in
a search of fewer than 10 completed trials any newer one makes it stale; among 2,000, 200 do
(the points then lack 9 % of the results at most). Otherwise the asker starts a new fit. A batch
older than `batch_max_age` or used up is dropped by the next asker that looks at it. Nothing of the batch is saved: the oracle's saved state is Keras Tuner's, as
before.

Random and grid oracles need none of this: their suggestions take microseconds.

    oracle = BayesianOptimizationOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=50)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine.trial import Trial, TrialStatus
from keras_tuner.oracles import BayesianOptimizationOracle as KerasTunerBayesianOracle

from tunecluster.kt_compat.oracle_lock import holds_lock, oracle_lock
from tunecluster.kt_compat import oracle_state
from tunecluster.kt_compat.oracle_state import queued
from tunecluster.tuning import gp_process, gp_suggest

log = logging.getLogger("tunecluster.chief")

RATE_WINDOW = 10.0  # seconds over which the rate of asks is measured (for `prefetch`)
RECENT_FITS = 8  # the batch is sized for the longest of these (a kernel optimisation takes longer)


@dataclass
class _Snapshot:
    space: list  # the non-fixed hyperparameters, in order
    hyperparameters: object  # a copy of the oracle's space (to turn vectors into values)
    x_done: np.ndarray
    y_done: np.ndarray
    x_running: np.ndarray
    space_size: int
    count: int = 1  # points wanted from this fit (the askers waiting, capped)
    completed: int = 0  # COMPLETED trials when it was taken
    taken_at: float = 0.0  # time.monotonic() when it was taken


@dataclass
class _Suggestion:
    space_size: int
    hyperparameters: object = None
    points: list = field(default_factory=list)  # vectors in [0, 1]^d, best first
    batch: list = field(default_factory=list)  # the batch's later points, each a `_Suggestion`

    def values(self):
        """The candidates as hyperparameter values, best first, each distinct one once."""
        seen = set()
        for point in self.points:
            values = _to_values(self.hyperparameters, point)
            key = tuple(sorted((k, str(v)) for k, v in values.items()))
            if key not in seen:
                seen.add(key)
                yield values


def _to_values(hyperparameters, vector) -> dict:
    """Keras Tuner's `_vector_to_values`, for a copy of the space."""
    hps = hp_module.HyperParameters()
    index = 0
    for hp in hyperparameters.space:
        hps.merge([hp])
        if isinstance(hp, hp_module.Fixed):
            value = hp.value
        else:
            value = hp.prob_to_value(float(vector[index]))
            index += 1
        if hps.is_active(hp):
            hps.values[hp.name] = value
    return hps.values


@dataclass
class _Batch:
    """The points of one fit not handed out yet, and when (after how many completed trials) its
    snapshot was taken."""

    suggestions: list  # `_Suggestion`s, in the order the liar rule chose them
    space_size: int
    completed: int
    taken_at: float
    made_at: float = 0.0  # time.monotonic() when the fit ended


class BayesianOptimizationOracle(KerasTunerBayesianOracle):
    """Keras Tuner's Bayesian oracle, with the model fitted outside the oracle lock (see module)."""

    def __init__(self, *args, refit_growth: float = 0.1, screen: int = 256, starts: int = 5,
                 suggest_in_child: bool = True, max_batch: int = 256, prefetch: float = 1.5,
                 refill: bool = True, batch_max_age: float = 10.0, stale_fraction: float = 0.1,
                 ask_wait: float = 2.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.suggest_in_child = suggest_in_child  # gp_process: off the chief's GIL
        self._key = uuid.uuid4().hex  # this oracle's model in the child
        self.refit_growth = refit_growth
        self.screen = screen
        self.starts = starts
        self._suggest_lock = threading.Lock()
        self._gp = gp_suggest.GPState()
        self._vectors: dict[str, tuple[int, list, float]] = {}  # trial id -> (space size, vector, y)
        self._space_copy: tuple[int, object] = (-1, None)
        self._pending: Optional[_Suggestion] = None
        self.max_batch = max_batch  # points per fit at most
        self.prefetch = prefetch  # extra points: this many fit durations' worth of expected askers
        self.refill = refill  # fit ahead, in a thread, when the batch would run out during a fit
        self.batch_max_age = batch_max_age  # seconds a batch's left-over points stay usable
        self.stale_fraction = stale_fraction  # ... while fewer new results than this share of those it saw
        self.suggests_outside_lock = True  # the chief must not hold the lock around create_trial
        self.ask_wait = ask_wait  # seconds an asker waits for a fit before it is told IDLE
        self._batch: _Batch | None = None  # guarded by the oracle lock
        self._askers = 0  # create_trial calls waiting for a model's suggestion
        self._asked: deque = deque()  # (when, tuner id) of the asks over the last RATE_WINDOW seconds
        self._askers_lock = threading.Lock()
        self._fit_times: deque = deque(maxlen=RECENT_FITS)
        self._fit_seconds = 0.0  # the longest of the recent fits (a kernel optimisation among them)
        self._batch_made = threading.Condition()  # notified when a fit ends
        self._fits = 0  # fits ended (guarded by _batch_made)
        self.last_timing: dict = {}

    # ---------------------------------------------------------------- the trial request
    def create_trial(self, tuner_id):
        if holds_lock(self):  # the caller holds the lock: nothing to gain, suggest in place
            return super().create_trial(tuner_id)
        with oracle_lock(self):
            if not self._needs_model(tuner_id):
                return super().create_trial(tuner_id)
        arrived = time.monotonic()
        with self._askers_lock:
            self._askers += 1
            self._asked.append((arrived, tuner_id))
            while self._asked and self._asked[0][0] < arrived - RATE_WINDOW:
                self._asked.popleft()
        try:
            trial, low = self._create_from_model(tuner_id, arrived)
        finally:
            with self._askers_lock:
                self._askers -= 1
        if low:  # (this asker no longer counted among those waiting)
            self._start_fit()
        return trial

    def _create_from_model(self, tuner_id, arrived: float):
        """A point of a batch if one is there for this asker; otherwise a fit starts (in a thread
        of its own, one at a time; it proposes a point for every asker waiting) and the asker
        waits for it at most `ask_wait` seconds, then gets IDLE (its worker asks again after a
        short back-off). Also returns whether the batch is running low."""
        deadline = arrived + self.ask_wait
        while True:
            with self._batch_made:
                fits = self._fits
            with oracle_lock(self):
                completed = self._completed()
                if not self._needs_model(tuner_id, completed):
                    return super().create_trial(tuner_id), False
                suggestion = self._take_from_batch(arrived, completed)
                if suggestion is not None:
                    return self._commit(tuner_id, suggestion), self._running_low(completed)
            self._start_fit()  # (none if one is running: its batch has a point for this asker)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Trial(self.hyperparameters.copy(), status=TrialStatus.IDLE), False
            with self._batch_made:
                if self._fits == fits:  # (or populate_space holds the lock: look again within 1 s)
                    self._batch_made.wait(min(1.0, remaining))

    def _expected_per_fit(self) -> float:
        """Askers expected while one fit runs (the recent rate of asks times the last fit's
        duration); 0 when a single worker asks (a serial search). `_askers_lock` held."""
        if len({tuner_id for _, tuner_id in self._asked}) < 2:
            return 0.0
        return len(self._asked) / RATE_WINDOW * self._fit_seconds

    def _running_low(self, completed: int) -> bool:
        """Would the batch's fresh points run out before a fit started now ends? (lock held)"""
        if not self.refill or self._suggest_lock.locked():
            return False
        batch, left = self._batch, 0
        if batch is not None and completed - batch.completed <= int(self.stale_fraction * batch.completed):
            left = len(batch.suggestions)
        with self._askers_lock:
            expected = self._expected_per_fit()
        return expected >= 1 and left < expected  # (fewer than one asker per fit: not worth a fit ahead)

    def _start_fit(self) -> None:
        """A fit in a thread of its own, unless one is running: no gRPC thread of the chief waits
        through a fit longer than `ask_wait`."""
        if not self._suggest_lock.acquire(blocking=False):
            return  # a fit is running already
        threading.Thread(target=self._fit, name=f"bayesian-fit-{time.monotonic_ns()}", daemon=True).start()

    def _fit(self) -> None:
        """The fit `_start_fit` started, holding `_suggest_lock`: all its points go to the batch,
        for the askers waiting when its snapshot was taken and those to come."""
        try:
            with oracle_lock(self):
                if (self.max_trials and len(self.trials) >= self.max_trials) or self._completed() < self._initial_points():
                    return
                snapshot = self._snapshot(self._batch_size())
            started = time.monotonic()
            suggestion = self._compute(snapshot)
            self._fit_times.append(time.monotonic() - started)
            self._fit_seconds = max(self._fit_times)
            with oracle_lock(self):
                points = [_Suggestion(snapshot.space_size, snapshot.hyperparameters, suggestion.points)]
                self._batch = _Batch(points + list(suggestion.batch), snapshot.space_size, snapshot.completed,
                                     snapshot.taken_at, made_at=time.monotonic())
        except Exception as error:  # noqa: BLE001 - the next asker starts another fit
            log.warning("Bayesian suggestions: a model fit failed (%s)", error)
        finally:
            self._suggest_lock.release()
            with self._batch_made:
                self._fits += 1
                self._batch_made.notify_all()

    def _batch_size(self) -> int:
        """The askers waiting now, plus those expected while the next fit runs (`prefetch`
        times the last fit's duration at the recent rate of asks; none when a single worker asks),
        capped at `max_batch`."""
        with self._askers_lock:
            expected = int(self._expected_per_fit() * self.prefetch)
            return max(1, min(self._askers + expected, self.max_batch))

    def _commit(self, tuner_id, suggestion: _Suggestion):
        """Keras Tuner's create_trial with `suggestion` as populate_space's values (lock held)."""
        self._pending = suggestion
        try:
            return super().create_trial(tuner_id)
        finally:
            self._pending = None

    def _take_from_batch(self, arrived: float, completed: int) -> _Suggestion | None:
        """The batch's next point for an asker that arrived at `arrived`, if the staleness rule
        (module docstring) allows it; drops a batch that is too old or used up (lock held)."""
        batch = self._batch
        if batch is None:
            return None
        age = time.monotonic() - batch.made_at
        if not batch.suggestions or age > self.batch_max_age or batch.space_size != len(self.hyperparameters.space):
            self._batch = None
            return None
        if arrived > batch.taken_at and completed - batch.completed > int(self.stale_fraction * batch.completed):
            return None  # computed before results this asker could have had
        return batch.suggestions.pop(0)

    def _completed(self) -> int:
        return sum(1 for t in self.trials.values() if t.status == "COMPLETED")

    def _needs_model(self, tuner_id, completed: int | None = None) -> bool:
        """Would Keras Tuner's create_trial reach the Gaussian process? (lock held)"""
        if tuner_id in self.ongoing_trials or queued(self):
            return False
        if self.max_trials and len(self.trials) >= self.max_trials:
            return False
        return (self._completed() if completed is None else completed) >= self._initial_points()

    def _initial_points(self) -> int:
        return self.num_initial_points or max(3 * len(self.hyperparameters.space), 3)

    def populate_space(self, trial_id):
        if self._completed() < self._initial_points():
            return oracle_state.random_trial(self)
        suggestion = self._pending
        if suggestion is None or suggestion.space_size != len(self.hyperparameters.space):
            # Called with the lock held by a caller, or the space grew meanwhile: suggest here
            # (unless another suggestion is being computed: then random values).
            if not self._suggest_lock.acquire(blocking=False):
                return oracle_state.random_trial(self)
            try:
                suggestion = self._compute(self._snapshot())
            finally:
                self._suggest_lock.release()
        for checked, values in enumerate(suggestion.values()):
            if not oracle_state.is_duplicate(self, values):
                return {"status": TrialStatus.RUNNING, "values": values}
            if checked >= 32:
                break
        return oracle_state.random_trial(self)

    # ---------------------------------------------------------------- snapshot (lock held)
    def _vector(self, space, trial) -> list:
        hps = trial.hyperparameters
        vector = []
        for hp in space:
            value = hps.values[hp.name] if (hps.is_active(hp) and hp.name in hps.values) else hp.default
            vector.append(hp.value_to_prob(value))
        return vector

    def _snapshot(self, count: int = 1) -> _Snapshot:
        space = [hp for hp in self.hyperparameters.space if not isinstance(hp, hp_module.Fixed)]
        size = len(self.hyperparameters.space)
        if self._space_copy[0] != size:
            self._space_copy = (size, self.hyperparameters.copy())
        running = {t.trial_id for t in self.ongoing_trials.values()}
        x_done, y_done, x_running = [], [], []
        sign = -1.0 if self.objective.direction == "max" else 1.0
        for trial in self.trials.values():
            if trial.trial_id in running:
                x_running.append(self._vector(space, trial))
            elif trial.status == "COMPLETED":
                cached = self._vectors.get(trial.trial_id)
                if cached is None or cached[0] != size:
                    score = trial.score if trial.score is not None else np.nan
                    cached = (size, self._vector(space, trial), sign * float(score))
                    self._vectors[trial.trial_id] = cached
                x_done.append(cached[1])
                y_done.append(cached[2])
        dims = len(space)
        return _Snapshot(space, self._space_copy[1], np.array(x_done, dtype=float).reshape(-1, dims),
                         np.array(y_done, dtype=float), np.array(x_running, dtype=float).reshape(-1, dims),
                         size, count=count, completed=self._completed(), taken_at=time.monotonic())

    # ---------------------------------------------------------------- the model (no lock)
    def _compute(self, snap: _Snapshot) -> _Suggestion:
        dims = len(snap.space)
        if dims == 0 or len(snap.x_done) == 0:
            return _Suggestion(snap.space_size, snap.hyperparameters, [])
        request = {"x_done": snap.x_done, "y_done": snap.y_done, "x_running": snap.x_running, "dims": dims,
                   "alpha": self.alpha, "seed": self.seed, "beta": self.beta, "refit_growth": self.refit_growth,
                   "screen": self.screen, "starts": self.starts, "count": snap.count,
                   "rng_seed": int(oracle_state.random_state(self).randint(0, 2**31 - 1))}
        answer = None
        if self.suggest_in_child:
            try:
                answer = gp_process.shared().compute(self._key, request)
            except RuntimeError as error:  # computed here instead, from this process's own model
                self.suggest_in_child = False
                log.warning("Bayesian suggestions: %s; computing them in the chief's process from now on", error)
        if answer is None:
            self._gp, answer = gp_process.compute(self._gp, request)
        self.last_timing = answer["timing"]
        later = [_Suggestion(snap.space_size, snap.hyperparameters, points) for points in answer.get("batch", [])[1:]]
        return _Suggestion(snap.space_size, snap.hyperparameters, answer["points"], later)
