"""An exception inside the oracle never leaves Keras Tuner's oracle lock held (its `@synchronized`
has no try/finally; the chief's calls release it)."""

from __future__ import annotations

import pytest


def test_an_oracle_exception_never_leaves_its_lock_held():
    import keras_tuner as kt
    from keras_tuner.src.engine import oracle as oracle_module

    from tunecluster.cluster.chief import ChiefServicer, SearchBook
    from tunecluster.cluster.leases import Leases

    class Exploding(kt.oracles.RandomSearchOracle):
        def populate_space(self, trial_id):
            raise ZeroDivisionError("the oracle broke")

    oracle = Exploding(objective="val_accuracy", max_trials=3)
    oracle.hyperparameters.Int("units", 1, 4)
    servicer = ChiefServicer(oracle, SearchBook(), space_wait=0, leases=Leases(30))
    with pytest.raises(ZeroDivisionError):
        servicer._guarded(None, oracle.create_trial, "tuner0")
    assert not oracle_module.LOCKS[oracle].locked()
    assert oracle_module.THREADS[oracle] is None
    # and the oracle still answers
    assert oracle.get_space().space[0].name == "units"
