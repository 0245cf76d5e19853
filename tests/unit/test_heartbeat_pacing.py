"""The chief's heartbeat pacing: the interval and lease timeout grow with the workers beyond the
budget, the lease never shrinks before slow beaters heard the shorter interval, and a worker's
heartbeat thread adopts the interval its chief answers."""

from tunecluster.cluster.heartbeat_pacing import HeartbeatPacing
from tunecluster.cluster.leases import Leases
from tunecluster.cluster.worker.heartbeat import Heartbeat


def _pacing(now, interval=2.0, lease=30.0, budget=100.0):
    leases = Leases(timeout=lease, clock=lambda: now[0])
    return HeartbeatPacing(leases, interval, budget, clock=lambda: now[0]), leases


def test_a_small_cluster_keeps_the_spec_interval_and_lease():
    now = [0.0]
    pacing, leases = _pacing(now)
    for worker in range(200):  # 200 workers / 2 s = 100 calls/s: the budget exactly
        assert pacing.beat(f"w{worker}") == 2.0
    assert leases.timeout == 30.0
    assert pacing.summary() == {"workers_beating": 200, "heartbeat_s": 2.0, "lease_timeout_s": 30.0,
                                "budget_per_s": 100.0}


def test_a_thousand_workers_beat_every_ten_seconds_and_keep_the_lease_ratio():
    now = [0.0]
    pacing, leases = _pacing(now)
    told = [pacing.beat(f"w{worker}") for worker in range(1000)]
    assert told[0] == 2.0 and told[-1] == 10.0  # 1,000 workers / 100 calls/s
    assert leases.timeout == 150.0  # the spec's 30 s / 2 s ratio, at 10 s
    # a lease renewed now lasts the longer timeout: a worker beating every 10 s keeps it
    leases.grant("7", "w7")
    now[0] += 140.0
    assert leases.expired() == []
    now[0] += 20.0
    assert [lease.trial_id for lease in leases.expired()] == ["7"]


def test_the_lease_shrinks_only_after_the_workers_heard_the_shorter_interval():
    now = [0.0]
    pacing, leases = _pacing(now)
    for worker in range(1000):
        pacing.beat(f"w{worker}")
    timeline = {}
    # 900 workers are gone at 0 s; 100 keep beating every 10 s
    while now[0] < 320.0:
        now[0] += 10.0
        timeline[now[0]] = ([pacing.beat(f"w{worker}") for worker in range(100)][-1], leases.timeout)
    # they count until one lease timeout (150 s) without a beat: the interval told is 10 s...
    assert timeline[150.0] == (10.0, 150.0)
    # ...then 2 s at once, while the lease timeout stays 150 s for one old timeout after it was
    # last told (at 150 s), so a worker that heard "10 s" keeps its trial until it hears "2 s"
    assert timeline[160.0] == (2.0, 150.0) and timeline[290.0] == (2.0, 150.0)
    assert timeline[300.0] == (2.0, 30.0) and pacing.workers() == 100


class _Chief:
    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def __call__(self, message):
        self.calls.append(message)
        return self.answer


def test_a_worker_beats_at_the_interval_its_chief_answers_never_below_its_own():
    chief = _Chief({"ok": True, "heartbeat_s": 10.0})
    beat = Heartbeat(chief, "w0", interval=2.0, min_gap=0.25)
    beat._send_once()
    assert (beat.interval, beat.min_gap) == (10.0, 10.0)  # changes ride on the paced beats
    chief.answer = {"ok": True, "heartbeat_s": 0.5}
    beat._send_once()
    assert (beat.interval, beat.min_gap) == (2.0, 0.25)
    chief.answer = {"ok": True}  # a chief of an older version: the interval stays
    beat._send_once()
    assert beat.interval == 2.0 and len(chief.calls) == 3
