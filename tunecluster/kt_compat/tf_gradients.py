"""Gives back the memory TensorFlow would keep of every finished trial's traced graphs.

Each `tf.custom_gradient` met while tracing (Keras' training step meets some) registers its
gradient function under a fresh name ("CustomGradient-<uid>") in TensorFlow's global gradient
registry, and nothing ever removes it. The function's closure holds the traced graph's tensors,
so every trial's whole train-step graph (its FuncGraph, operations and the functions registered
in the eager context) stays alive after `clear_session()`: ~7 MiB per trial with TF 2.21 /
Keras 3.15, so a worker that ran 50 trials carried 50 dead models.

A registered gradient is only read while a graph that uses it is being differentiated, which
happens while it is traced; a retrace calls the custom gradient again under a new name. So once a
trial's model is released, the names registered during it can go. `GradientRegistry.release()`
drops those registered since the worker started (never the ones present at start-up) and is
called between trials, before the next build's `clear_session()` + `gc.collect()`.
"""

from __future__ import annotations

PREFIX = "CustomGradient-"


def _registry() -> dict:
    from tensorflow.python.framework import ops

    return ops._gradient_registry._registry  # noqa: SLF001 - TF offers no public way to unregister


class GradientRegistry:
    """Remembers the custom gradients present at start-up; `release()` drops the rest."""

    def __init__(self) -> None:
        self._at_start = frozenset(name for name in _registry() if name.startswith(PREFIX))

    def release(self) -> int:
        """Unregister the custom gradients of traces made since start-up; returns how many."""
        registry = _registry()
        stale = [name for name in registry if name.startswith(PREFIX) and name not in self._at_start]
        for name in stale:
            registry.pop(name, None)
        return len(stale)
