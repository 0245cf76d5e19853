"""GradientRegistry: the custom gradients a trace registers are dropped between trials, those
present at start-up are kept, and the released graph is collected (the whole-worker memory check
is tests/integration/test_worker_memory.py)."""

from __future__ import annotations

import gc
import weakref

import tensorflow as tf

from tunecluster.kt_compat.tf_gradients import PREFIX, GradientRegistry, _registry


@tf.custom_gradient
def _clipped_identity(x):
    return tf.identity(x), lambda dy: tf.clip_by_value(dy, -1.0, 1.0)


def _trace_once():
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = _clipped_identity(x) * 3.0
        return tape.gradient(y, x)

    concrete = step.get_concrete_function(tf.TensorSpec([2], tf.float32))
    return weakref.ref(concrete.graph), step(tf.constant([1.0, -5.0])).numpy()


def _names():
    return {name for name in _registry() if name.startswith(PREFIX)}


def test_release_drops_only_gradients_registered_after_start_and_frees_the_graph():
    _trace_once()  # one that predates the registry object: must survive
    at_start = _names()
    registry = GradientRegistry()
    graph, grads = _trace_once()
    assert list(grads) == [1.0, 1.0]  # the custom gradient was used (3.0 clipped to 1.0)
    assert len(_names() - at_start) >= 1
    gc.collect()
    assert graph() is not None  # held by the registry

    assert registry.release() >= 1
    gc.collect()
    assert _names() == at_start
    assert graph() is None
    assert registry.release() == 0
