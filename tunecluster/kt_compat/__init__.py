"""Everything tunecluster does with Keras Tuner's, Keras' and TensorFlow's private code, in one
package, installed by one call at each role's start-up and guarded by a version gate.

    kt_compat.install("chief")              # before the chief imports Keras Tuner
    kt_compat.install("worker")             # a worker that trains Keras models
    kt_compat.install("model_free_worker")  # a run_trial worker whose code brings no Keras

`install(role)` first checks the installed keras-tuner / keras / tensorflow against the tested
ranges (`versions.py`: one line, exit 2, outside them), then applies that role's process-wide
patches, each in its own module with a docstring naming the upstream function it replaces and why:

    keras_stub.py       a stand-in `keras` package (chief, model-free workers: no TensorFlow import)
    hyperparameters.py  `hp_types.deserialize` without Keras' slow generic path (chief, workers)
    atomic_state.py     `keras_tuner.src.utils.save_json` written atomically (chief)
    keras_saving.py     Keras' attribute skip-sets memoised (workers with Keras)

and provides what the roles use per object:

    oracle_lock.py      the one way to hold Keras Tuner's per-oracle lock, always released
    oracle_methods.py   cheaper equivalents of five oracle methods, installed on the chief's oracle
    oracle_state.py     the oracle's private attributes the chief reads and changes
    trial_protos.py     trial protos without rebuilding a trial's hyperparameters per answer
    hyperparameter_reads.py  which hyperparameters a build (or run_trial) read
    internals.py        Keras Tuner's private modules (protos, the servicer, tuner utilities)
    tf_gradients.py     TensorFlow's gradient registry, emptied of finished trials' gradients
    random_streams.py   a Keras model's random streams (Dropout's), read and restored with a checkpoint
    script_hooks.py     a Keras Tuner script's tuner construction and search() routed through
                        `tunecluster.script` (installed by its launcher, not by `install`)

Nothing here is imported by the roles' code paths until `install` ran (the chief must install the
stand-in before anything imports Keras Tuner); every function is idempotent.
"""

from __future__ import annotations

from tunecluster.kt_compat.versions import check_versions

ROLES = ("chief", "worker", "model_free_worker")
_installed: set[str] = set()


def install(role: str) -> None:
    """Check the versions for `role` and apply its patches (see the module docstring)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role in _installed:
        return
    check_versions(role)
    from tunecluster.kt_compat import hyperparameters, keras_stub

    if role in ("chief", "model_free_worker"):
        keras_stub.install()  # before Keras Tuner is imported (does nothing when Keras already is)
    hyperparameters.install()  # every CreateTrial copies the space; every received trial is rebuilt
    if role == "chief":
        from tunecluster.kt_compat import atomic_state

        atomic_state.install()
    if role == "worker":
        from tunecluster.kt_compat import keras_saving

        keras_saving.install()
    _installed.add(role)


__all__ = ["ROLES", "check_versions", "install"]
