"""The chief's garbage-collection policy: survivors of a full collection frozen, the whole heap
swept every `sweep_every` seconds, and garbage in reference cycles still freed by the sweep."""

import gc
import weakref

import pytest

from tunecluster.cluster.chief.heap_freezing import HeapFreezing


class Node:
    def __init__(self):
        self.other = None


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def freezing():
    clock = Clock()
    policy = HeapFreezing(sweep_every=600.0, clock=clock).install()
    policy.test_clock = clock
    try:
        yield policy
    finally:
        policy.uninstall()


def a_cycle():
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first


def test_a_full_collection_freezes_its_survivors(freezing):
    kept = a_cycle()
    gc.collect()
    assert freezing.freezes == 1 and freezing.sweeps == 0
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(kept)
    # the frozen objects are no longer in any generation that a collection walks
    assert all(obj is not kept for obj in gc.get_objects(generation=2))


def test_garbage_in_a_cycle_is_freed_by_the_next_sweep_not_before(freezing):
    cycle = a_cycle()
    gone = weakref.ref(cycle)
    gc.collect()  # frozen while still alive
    del cycle  # now garbage, in a cycle, frozen: reference counting cannot free it
    gc.collect()
    assert gone() is not None

    freezing.test_clock.now += 600.0  # a sweep is due
    gc.collect()  # releases the frozen objects (this collection had frozen none of them)
    assert freezing.sweep_pending and gc.get_freeze_count() == 0
    gc.collect()  # walks the whole heap
    assert gone() is None
    assert freezing.sweeps == 1 and not freezing.sweep_pending
    assert gc.get_freeze_count() > 0  # and freezes again


def test_objects_without_cycles_are_freed_while_frozen(freezing):
    obj = Node()
    gone = weakref.ref(obj)
    gc.collect()
    assert gc.get_freeze_count() > 0
    del obj  # reference counting frees it at once
    assert gone() is None


def test_only_full_collections_count(freezing):
    gc.collect(0)
    gc.collect(1)
    assert freezing.freezes == 0
    gc.collect()
    assert freezing.freezes == 1


def test_uninstall_releases_the_frozen_objects():
    policy = HeapFreezing().install()
    gc.collect()
    assert gc.get_freeze_count() > 0
    policy.uninstall()
    assert gc.get_freeze_count() == 0 and policy not in gc.callbacks
