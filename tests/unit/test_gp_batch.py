"""The Bayesian batch rule (`tuning/gp_batch.py`, `tuning/bayesian_oracle.py`): one model fit
proposes k distinct points, the liar (each chosen point a pending observation at mean + std) pushes
the later points away from the earlier ones, one fit serves the askers that waited for it, and a
batch goes stale as the module docstring says. The oracle runs in this process (no child process
in the unit tier); the concurrent askers are real threads on a real Keras Tuner oracle."""

from __future__ import annotations

import threading
import time

import keras_tuner as kt
import numpy as np


def _model(dims: int = 2, n: int = 40, seed: int = 0):
    from tunecluster.tuning import gp_suggest

    rng = np.random.RandomState(seed)
    x = rng.uniform(size=(n, dims))
    y = ((x - 0.3) ** 2).sum(axis=1)  # minimised: best at (0.3, 0.3, ...)
    return gp_suggest.fit(gp_suggest.GPState(), x, y, alpha=1e-4, seed=1).posterior


def test_one_fit_proposes_k_distinct_points_in_the_unit_cube():
    from tunecluster.tuning import gp_batch, gp_suggest

    posterior = _model(dims=4)
    rng = np.random.RandomState(3)
    first = gp_suggest.suggest(posterior, 4, 2.6, rng, starts=5)
    points = gp_batch.batch(posterior, first, 12, 2.6, rng)
    assert len(points) == 12
    assert points[0] == first  # the first point is the ordinary suggestion, unchanged
    chosen = np.array([candidates[0] for candidates in points])
    assert ((chosen >= 0) & (chosen <= 1)).all()
    gaps = np.linalg.norm(chosen[:, None, :] - chosen[None, :, :], axis=-1)[np.triu_indices(12, 1)]
    assert gaps.min() >= 0.01  # distinct, none closer than `separation`
    assert all(1 < len(candidates) <= gp_batch.FALLBACKS + 1 for candidates in points[1:])
    # one point: exactly the single suggestion, nothing else drawn
    assert gp_batch.batch(posterior, first, 1, 2.6, rng) == [first]


def test_the_liar_pushes_later_points_away_from_earlier_ones():
    from tunecluster.tuning import gp_batch, gp_suggest

    posterior = _model(n=12)  # few observations: the model is unsure between them
    first = gp_suggest.suggest(posterior, 2, 2.6, np.random.RandomState(1), starts=5)
    candidates = gp_batch.pool(first, np.random.RandomState(2))
    mean, cov = gp_batch.joint(posterior, candidates)
    # the joint posterior is the model's: its diagonal is the predicted variance (normalised units)
    _, std = posterior.predict(candidates)
    np.testing.assert_allclose(np.sqrt(np.maximum(np.diag(cov), 0)) * posterior.y_std, std, atol=1e-6)
    bound = mean - 2.6 * np.sqrt(np.maximum(np.diag(cov), 0))
    distance = np.linalg.norm(candidates - candidates[0], axis=1)
    # without the liar the runner-up (outside `separation`) sits right next to the first point
    eligible = np.where(distance >= 0.01)[0]
    runner_up = eligible[np.argmin(bound[eligible])]
    points = gp_batch.batch(posterior, first, 2, 2.6, np.random.RandomState(2))
    second = points[1][0]
    assert distance[runner_up] < 0.05 and np.linalg.norm(second - first[0]) > 0.2


def _oracle(tmp_path, **kwargs):
    from tunecluster.tuning.bayesian_oracle import BayesianOptimizationOracle

    oracle = BayesianOptimizationOracle(objective=kt.Objective("score", "max"), max_trials=40,
                                        num_initial_points=3, seed=5, suggest_in_child=False, **kwargs)
    oracle._set_project_dir(str(tmp_path), "p")
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    hp.Float("y", 0.0, 1.0)
    oracle.update_space(hp)
    return oracle


def _finish(oracle, trial):
    from keras_tuner.src.engine import trial as trial_module

    values = trial.hyperparameters.values
    oracle.update_trial(trial.trial_id, {"score": -(values["x"] - 0.3) ** 2 - (values["y"] - 0.6) ** 2}, step=0)
    trial.status = trial_module.TrialStatus.COMPLETED
    oracle.end_trial(trial)


def _initial(oracle):
    for i in range(3):  # the random initial points
        _finish(oracle, oracle.create_trial(f"tuner{i}"))


def test_one_fit_serves_every_asker_that_waited_for_it(tmp_path):
    oracle = _oracle(tmp_path, prefetch=0.0, refill=False)  # exactly the askers waiting, no fit ahead
    _initial(oracle)
    compute, snapshots = oracle._compute, []
    entered, release = threading.Event(), threading.Event()

    def held_open(snapshot):
        snapshots.append(snapshot)
        if len(snapshots) == 1:
            entered.set()
            assert release.wait(30)
        return compute(snapshot)

    oracle._compute = held_open
    trials = {}

    def ask(tuner_id):
        trials[tuner_id] = oracle.create_trial(tuner_id)

    first = threading.Thread(target=ask, args=("tuner0",))
    first.start()
    assert entered.wait(30)
    others = [threading.Thread(target=ask, args=(f"tuner{i}",)) for i in range(1, 5)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 30
    while oracle._askers < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(30)
    assert sorted(trials) == [f"tuner{i}" for i in range(5)]
    assert all(t.status == "RUNNING" for t in trials.values())
    values = {tuple(sorted(t.hyperparameters.values.items())) for t in trials.values()}
    assert len(values) == 5  # five distinct trials
    # the first fit was for tuner0 alone; the second, for the four that waited meanwhile
    assert [s.count for s in snapshots] == [1, 4]
    assert oracle._batch is None or not oracle._batch.suggestions


def test_a_batch_goes_stale_for_later_askers_and_is_dropped_when_old(tmp_path):
    from tunecluster.tuning.bayesian_oracle import _Batch

    oracle = _oracle(tmp_path, batch_max_age=5.0, stale_fraction=0.05)
    _initial(oracle)
    running = oracle.create_trial("tuner5")
    snapshot = oracle._snapshot(4)
    batch = oracle._compute(snapshot)
    assert len(batch.batch) == 3  # three more points from the same fit

    def stored(age=0.0):
        oracle._batch = _Batch(list(batch.batch), snapshot.space_size, snapshot.completed, snapshot.taken_at,
                               made_at=time.monotonic() - age)  # age: since its fit ended
        return oracle._batch

    before, after = snapshot.taken_at - 1.0, time.monotonic() + 1.0
    stored()
    # fresh: a later asker takes a left-over point
    assert oracle._take_from_batch(after, oracle._completed()) is batch.batch[0]
    _finish(oracle, running)  # a newer trial completed
    # stale: not for an asker that came after the snapshot (the batch stays for those before it)
    assert oracle._take_from_batch(after, oracle._completed()) is None and oracle._batch is not None
    assert oracle._take_from_batch(before, oracle._completed()) is batch.batch[1]
    # too old: dropped, for everyone
    stored(age=6.0)
    assert oracle._take_from_batch(before, oracle._completed()) is None and oracle._batch is None
    # used up: dropped
    stored().suggestions.clear()
    assert oracle._take_from_batch(before, oracle._completed()) is None and oracle._batch is None
    # a batch that saw 40 completed trials stays fresh for 2 more (5 %), not 3
    oracle._batch = _Batch(list(batch.batch), snapshot.space_size, 40, time.monotonic(), made_at=time.monotonic())
    assert oracle._take_from_batch(after, 42) is batch.batch[0]
    assert oracle._take_from_batch(after, 43) is None


def test_the_batch_covers_the_askers_expected_while_the_next_fit_runs(tmp_path):
    oracle = _oracle(tmp_path, max_batch=16)
    now = time.monotonic()
    assert oracle._batch_size() == 1  # nobody asked yet
    oracle._asked.extend([(now, "tuner0")] * 50)  # 5 asks per second over the last 10 s
    oracle._fit_seconds = 0.8
    assert oracle._batch_size() == 1  # all from one worker: a serial search, nothing ahead
    oracle._asked.append((now, "tuner1"))
    assert oracle._batch_size() == 6  # 5.1/s x 0.8 s x 1.5
    oracle._askers = 3
    assert oracle._batch_size() == 9
    oracle._fit_seconds = 10.0
    assert oracle._batch_size() == 16  # capped


def test_a_serial_search_fits_once_per_trial_with_one_point(tmp_path):
    oracle = _oracle(tmp_path)
    _initial(oracle)
    compute, counts = oracle._compute, []
    oracle._compute = lambda snapshot: counts.append(snapshot.count) or compute(snapshot)
    for _ in range(4):
        _finish(oracle, oracle.create_trial("tuner0"))
    assert counts == [1, 1, 1, 1] and (oracle._batch is None or not oracle._batch.suggestions)
    assert oracle.last_timing["count"] == 1


def test_a_batch_running_low_is_refilled_ahead_by_a_fit_nobody_waits_for(tmp_path):
    from tunecluster.tuning.bayesian_oracle import _Batch

    oracle = _oracle(tmp_path, max_batch=8)
    _initial(oracle)
    snapshot = oracle._snapshot(2)
    made = oracle._compute(snapshot)
    oracle._batch = _Batch(list(made.batch), snapshot.space_size, snapshot.completed, snapshot.taken_at,
                           made_at=time.monotonic())
    now = time.monotonic()
    oracle._asked.extend([(now, "tuner0"), (now, "tuner1")] * 20)  # 4 asks per second, two workers
    oracle._fit_seconds = 1.0  # 4 askers expected during a fit, 1 point left: running low
    compute, counts = oracle._compute, []
    oracle._compute = lambda snapshot: counts.append(snapshot.count) or compute(snapshot)
    with oracle._batch_made:
        fits = oracle._fits
    trial = oracle.create_trial("tuner1")  # takes the left-over point, starts the refill
    assert trial.status == "RUNNING" and counts in ([], [6])
    deadline = time.monotonic() + 30
    while oracle._fits == fits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counts == [6]  # 4 expected x prefetch 1.5, nobody waiting
    assert len(oracle._batch.suggestions) == 6 and not oracle._suggest_lock.locked()
    # the next askers take its points without a fit of their own
    for i in range(2, 5):
        assert oracle.create_trial(f"tuner{i}").status == "RUNNING"
    assert counts[0] == 6 and len(oracle._batch.suggestions) <= 3
    values = {tuple(sorted(t.hyperparameters.values.items())) for t in oracle.trials.values()}
    assert len(values) == len(oracle.trials)


def test_an_asker_waits_for_a_fit_at_most_ask_wait_then_hears_idle(tmp_path):
    oracle = _oracle(tmp_path, ask_wait=0.3, prefetch=0.0, refill=False)
    _initial(oracle)
    compute, release = oracle._compute, threading.Event()

    def slow(snapshot):
        assert release.wait(30)
        return compute(snapshot)

    oracle._compute = slow
    started = time.monotonic()
    idle = oracle.create_trial("tuner0")  # its fit runs in a thread of its own, longer than 0.3 s
    assert idle.status == "IDLE" and time.monotonic() - started < 2.0
    assert oracle._suggest_lock.locked() and "tuner0" not in oracle.ongoing_trials
    release.set()
    deadline = time.monotonic() + 30
    while oracle._suggest_lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    oracle._compute = lambda snapshot: (_ for _ in ()).throw(AssertionError("no second fit"))
    again = oracle.create_trial("tuner0")  # asks again: the point the fit made for it
    assert again.status == "RUNNING"
