"""A worker's back-off between IDLE answers grows to its maximum and resets on work."""

from __future__ import annotations

from tunecluster.cluster.worker.tuner import Backoff


def test_idle_backoff_grows_and_resets():
    backoff = Backoff(first=0.05, maximum=0.4)
    assert [backoff.next() for _ in range(5)] == [0.05, 0.1, 0.2, 0.4, 0.4]
    backoff.reset()
    assert backoff.next() == 0.05
