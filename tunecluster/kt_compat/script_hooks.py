"""The two Keras Tuner entry points an unmodified script goes through, wrapped for
`tunecluster.script` (the launcher that runs a Keras Tuner script as a tunecluster role).

Upstream functions replaced (keras-tuner 1.4.x, `keras_tuner.src.engine.base_tuner`):

- `BaseTuner.__init__`: its `directory`, `project_name` and `overwrite` arguments go through
  `hooks.place(...)` first (the run folder replaces whatever the script passes; `overwrite=True`
  would `rmtree` the shared project, a resumed run included), and `hooks.tuner_built(tuner)` runs
  after it (on a worker, Keras Tuner's `OracleClient` exists by then);
- `BaseTuner.search`: `hooks.search(tuner, original_search, fit_args, fit_kwargs)` runs instead;
  on the chief, Keras Tuner's own `oracle_chief.start_server` (one thread, no authentication) is
  then never reached.

On a worker, `wrap_trial_run(tuner, wrap)` also routes the tuner's `_run_and_update_trial` (the
call that trains one trial, inside `_try_run_and_update_trial`, which records any `Exception`
out of it as a FAILED or INVALID trial) through `wrap`: a failure that is not the trial's (the
shared run folder gone) can then leave as a `BaseException` instead of being recorded.

`install(hooks)` is idempotent per process; `uninstall()` restores the originals (unit tests).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from tunecluster.kt_compat import oracle_state


class ScriptHooks(Protocol):
    def place(self, tuner, directory, project_name, overwrite) -> tuple[str, str, bool]: ...

    def tuner_built(self, tuner) -> None: ...

    def search(self, tuner, original: Callable, fit_args: tuple, fit_kwargs: dict) -> Any: ...


_originals: dict[str, Callable] = {}


def install(hooks: ScriptHooks) -> None:
    """Route every tuner's construction and `search()` through `hooks` (see the module docstring)."""
    from keras_tuner.src.engine import base_tuner

    cls = base_tuner.BaseTuner
    if not _originals:
        _originals["__init__"] = cls.__init__
        _originals["search"] = cls.search
    original_init, original_search = _originals["__init__"], _originals["search"]

    def __init__(self, oracle, hypermodel=None, directory=None, project_name=None, overwrite=False, **kwargs):
        directory, project_name, overwrite = hooks.place(self, directory, project_name, overwrite)
        original_init(self, oracle, hypermodel, directory=directory, project_name=project_name,
                      overwrite=overwrite, **kwargs)
        hooks.tuner_built(self)

    def search(self, *fit_args, **fit_kwargs):
        return hooks.search(self, original_search, fit_args, fit_kwargs)

    cls.__init__ = __init__
    cls.search = search


def uninstall() -> None:
    from keras_tuner.src.engine import base_tuner

    if _originals:
        base_tuner.BaseTuner.__init__ = _originals.pop("__init__")
        base_tuner.BaseTuner.search = _originals.pop("search")


def wrap_trial_run(tuner, wrap: Callable[[Callable], Callable]) -> None:
    """Run this tuner's trainings through `wrap(original)` (see the module docstring); the
    original is called as `original(trial, *fit_args, **fit_kwargs)`."""
    tuner._run_and_update_trial = wrap(tuner._run_and_update_trial)


def client_stub(tuner):
    """The gRPC stub of a worker tuner's `OracleClient` (None on the chief / outside a cluster)."""
    return getattr(tuner.oracle, "stub", None)


def set_client_stub(tuner, stub) -> None:
    tuner.oracle.stub = stub


def local_oracle(tuner):
    """The oracle the script built (inside the worker's `OracleClient`, or the tuner's own)."""
    return getattr(tuner.oracle, "_oracle", tuner.oracle)


def reload_oracle_from(oracle, directory: str, project_name: str) -> None:
    """Point `oracle` at a project folder and load the search's trials from it (read-only use)."""
    oracle._set_project_dir(directory, project_name)
    oracle_state.reload(oracle)  # in creation order: equal scores name the chief's best trial
