"""The one way tunecluster holds Keras Tuner's per-oracle lock.

Keras Tuner guards every oracle method with `@synchronized`: a global `LOCKS[oracle]` plus
`THREADS[oracle]` (the holder's thread name), re-entrant for the holding thread. Its wrapper has no
`try/finally`, so an oracle method that raises leaves the lock held and every later call hangs
(a gap of Keras Tuner's distributed mode: docs/architecture.md). tunecluster takes the same lock, the same
re-entrant way (so its calls nest with the oracle's own), always released:

- `oracle_lock(oracle)`: a context manager holding it around several oracle calls;
- `call_releasing_lock(oracle, func, ...)`: call an oracle method and, whatever happens, release
  the lock if the method left it held (the `@synchronized` body raised);
- `holds_lock(oracle)`: whether this thread holds it.

Replaces: `keras_tuner.src.engine.oracle.synchronized` (the locking part), keras-tuner 1.4.x.
"""

from __future__ import annotations

import contextlib
import logging
import threading

log = logging.getLogger("tunecluster.chief")


def _tables():
    from keras_tuner.src.engine import oracle as oracle_module

    return oracle_module.LOCKS, oracle_module.THREADS


@contextlib.contextmanager
def oracle_lock(oracle):
    """Hold Keras Tuner's lock of `oracle` (re-entrant for this thread, like `@synchronized`),
    released even when the body raises."""
    locks, threads = _tables()
    me = threading.current_thread().name
    acquire = threads.get(oracle) != me
    if acquire:
        locks[oracle].acquire()
        threads[oracle] = me
    try:
        yield
    finally:
        if acquire and threads.get(oracle) == me:
            threads[oracle] = None
            locks[oracle].release()


def holds_lock(oracle) -> bool:
    _, threads = _tables()
    return threads.get(oracle) == threading.current_thread().name


def call_releasing_lock(oracle, func, *args, **kwargs):
    """`func(*args, **kwargs)` (an oracle method); if it raised inside `@synchronized`, the lock
    it left held is released here (unless this thread held it before the call)."""
    locks, threads = _tables()
    me = threading.current_thread().name
    held_before = threads.get(oracle) == me
    try:
        return func(*args, **kwargs)
    finally:
        if not held_before and threads.get(oracle) == me:
            threads[oracle] = None
            locks[oracle].release()
            log.error("released the oracle lock after %s raised", getattr(func, "__name__", func))
