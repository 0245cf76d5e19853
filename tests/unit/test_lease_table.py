"""The lease table's logic on a fake clock: grant, renew, expire, release."""

from __future__ import annotations

from tunecluster.cluster.leases import Leases


def test_lease_table_on_a_fake_clock():
    now = [100.0]
    leases = Leases(timeout=5, clock=lambda: now[0])
    leases.grant("0", "tuner0")
    leases.grant("1", "stock", timed=False)  # plain Keras Tuner workers are never timed out
    now[0] += 4
    assert leases.renew("0", "tuner0") and not leases.renew("0", "tuner1")
    now[0] += 4
    assert leases.expired() == []
    now[0] += 2
    assert [lease.trial_id for lease in leases.expired()] == ["0"]
    leases.renew_holder("tuner0")
    assert leases.expired() == []
    assert leases.holder("1") == "stock" and leases.release("1").tuner_id == "stock"
