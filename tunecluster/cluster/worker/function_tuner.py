"""Trainings without a Keras model: the spec's `run_trial` function instead of a hypermodel.

Keras Tuner's "tune anything": the search runs a plain function per training, which gets the
trial's hyperparameters and returns how well it did, so scikit-learn, XGBoost or any Python code
is tuned by the same chief, leases, seeds, confirmation stage and results as a Keras hypermodel:

    def run_trial(hp, data, seed):
        model = RandomForestClassifier(n_estimators=hp.Int("trees", 10, 300), random_state=seed)
        model.fit(data.x_train, data.y_train)
        return {"val_accuracy": model.score(data.x_val, data.y_val)}

- It is called as `run_trial(hp)`, `run_trial(hp, data)` or `run_trial(hp, data, seed)` (by
  position; a keyword-only `seed` works too). `data` holds the train and validation splits
  (`x_train`, `y_train`, `x_val`, `y_val`); the held-out test rows are never passed during the
  search. `seed` is the training's own seed; Python's `random` and NumPy's global generator are
  seeded with it before the call (and Keras', when the function's module imports Keras).
- It returns the objective's value (a number), a dict of metrics that holds the objective
  (`tuner.objective`), or a list of such dicts, one per epoch (the best and the last epoch are
  then scored as for a Keras model); a Keras `History` works too.
- The search space is what the function registers on `hp`. Unless its module also defines
  `declare_hyperparameters(hp)` (registering the same hyperparameters, as a Keras Tuner
  `HyperModel` may), nothing declares it beforehand: the first trial then runs with every
  hyperparameter at its default while the other workers wait for it (Keras Tuner does the same
  for `run_trial`), and later trials sample the space it registered.
- Confirmation runs call the function again with fresh seeds; with held-out test rows
  (`data.test_fraction`), each confirmation run is called a second time with the same seed and
  the test rows in place of the validation rows, and its returned metrics are the test scores.
- Early stopping (`tuner.early_stopping`, ASHA) needs a list of per-epoch dicts: its epochs
  feed the chief's curves when the function returns, but it cannot be stopped part way.
- There is no model: no weights file and no `best/model.keras`; the export writes
  `best/hyperparameters.json` and `best/metrics.json`. No degenerate-prediction check.
- The worker imports no TensorFlow unless the function's module does (import Keras or TensorFlow at
  the top of that module, not inside the function: the worker decides at start-up).
"""

from __future__ import annotations

import inspect
import numbers
import random
import sys
import time
from dataclasses import replace
from typing import Callable, Optional

import numpy as np

from tunecluster.cluster.worker.tuner import ClusterTuner
from tunecluster.core.errors import UsageError
from tunecluster.kt_compat.hyperparameter_reads import reads_of
from tunecluster.tuning.results import active_values


def bind_run_trial(func: Callable) -> Callable[..., object]:
    """`call(hp, data, seed)` for a `run_trial` taking (hp), (hp, data) or (hp, data, seed)."""
    params = list(inspect.signature(func).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    seed_keyword = any(p.kind == p.KEYWORD_ONLY and p.name == "seed" for p in params)
    count = 3 if takes_varargs else min(3, len(positional))
    if count == 0:
        raise UsageError("run_trial: the function takes no argument; define it as run_trial(hp[, data[, seed]])")

    def call(hp, data, seed):
        args = (hp, data, seed)[:count]
        return func(*args, seed=seed) if seed_keyword and count < 3 else func(*args)

    return call


def declared_space(func: Callable) -> Optional[Callable]:
    """The `declare_hyperparameters(hp)` function of `func`'s module, if it defines one."""
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    declare = getattr(module, "declare_hyperparameters", None)
    return declare if callable(declare) else None


def as_history(returned, objective_name: str) -> list[dict[str, float]]:
    """What `run_trial` returned, as per-epoch metrics; a UsageError says what to return instead."""
    if hasattr(returned, "history") and isinstance(getattr(returned, "history"), dict):  # keras History
        columns = returned.history
        length = max((len(v) for v in columns.values()), default=0)
        returned = [{k: v[i] for k, v in columns.items() if len(v) > i} for i in range(length)]
    if isinstance(returned, (numbers.Real, np.generic)) and not isinstance(returned, bool):
        epochs = [{objective_name: returned}]
    elif isinstance(returned, dict):
        epochs = [returned]
    elif isinstance(returned, (list, tuple)) and returned and all(isinstance(e, dict) for e in returned):
        epochs = list(returned)
    else:
        raise UsageError(f"run_trial returned {type(returned).__name__}; return the objective's value "
                         f"({objective_name}), a dict of metrics, or a list of per-epoch dicts")
    history = []
    for logs in epochs:
        try:
            history.append({str(k): float(v) for k, v in logs.items()})
        except (TypeError, ValueError):
            bad = next(k for k, v in logs.items() if not _is_number(v))
            raise UsageError(f"run_trial returned a non-numeric metric {bad!r} ({logs[bad]!r}); "
                             "return numbers only") from None
    if not any(objective_name in logs for logs in history):
        names = sorted({k for logs in history for k in logs})
        raise UsageError(f"run_trial returned {', '.join(names) or 'no metric'} without the objective "
                         f"{objective_name!r}; return it, or set tuner.objective to one of those")
    return history


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def best_and_last(history: list[dict], objective) -> tuple[dict, int, dict, int]:
    """(metrics at the best epoch, its index, metrics at the last epoch, its index); the first of
    equally good epochs is the best, as in Keras Tuner."""
    best_index = None
    for index, logs in enumerate(history):
        if not objective.has_value(logs):
            continue
        if best_index is None or objective.better_than(objective.get_value(logs),
                                                       objective.get_value(history[best_index])):
            best_index = index
    last = len(history) - 1
    return history[best_index], best_index, history[last], last


def split_metrics(metrics: dict) -> dict:
    """Validation metrics under the names Keras' `evaluate` gives them (no `val_` prefix); all of
    them when none has the prefix (an objective such as `score`)."""
    validation = {k[4:]: v for k, v in metrics.items() if k.startswith("val_")}
    return validation or dict(metrics)


def seed_everything(seed: int) -> None:
    """Python's and NumPy's global generators, and Keras' when the process really has Keras."""
    random.seed(seed)
    np.random.seed(seed)
    from tunecluster.kt_compat import keras_stub

    if "keras" in sys.modules and not keras_stub.installed():
        import keras

        keras.utils.set_random_seed(seed)


class FunctionTuner(ClusterTuner):
    """A worker's tuner whose trainings call `run_trial` (see the module docstring)."""

    def __init__(self, oracle, run_trial: Callable, **kwargs):
        self._run_trial = bind_run_trial(run_trial)
        self._declare = declared_space(run_trial)
        super().__init__(oracle, None, **kwargs)
        s = self.splits
        # the search never sees the held-out rows; the test call scores on them instead
        self._search_data = replace(s, x_test=None, y_test=None)
        self._test_data = (replace(s, x_val=s.x_test, y_val=s.y_test, x_test=None, y_test=None)
                           if s.x_test is not None else None)

    def _prepare_keras(self) -> None:  # no model, no Keras state to manage
        return None

    def _populate_initial_space(self):
        """Keras Tuner's start-up discovery of the space: the module's
        `declare_hyperparameters(hp)` when it has one (then no trial runs with the defaults)."""
        if self._declare is None:
            return
        hp = self.oracle.get_space()
        self._declare(hp)
        self.oracle.update_space(hp)

    def run_trial(self, trial, *args, **kwargs):
        """Keras Tuner's hook (a subclass that overrides it may have no hypermodel); the cluster's
        units go through `_train_unit`."""
        return self._call(trial.hyperparameters, self._search_data, 0)

    def _call(self, hp, data, seed: int) -> list[dict]:
        seed_everything(seed)
        with reads_of(hp) as read:
            returned = self._run_trial(hp, data, seed)
        self.last_read = read  # the hyperparameters this training used (results show only those)
        return as_history(returned, self.oracle.objective.name)

    def _train_unit(self, trial, unit: dict) -> dict:
        started = time.time()
        hp = trial.hyperparameters
        confirm = unit["kind"] == "confirm"
        seed = int(unit["seed"])
        history = self._call(hp, self._search_data, seed)
        trained = time.time()
        if self.curves_needed and not confirm and len(history) < 2:
            raise UsageError("run_trial returned one value, but tuner.early_stopping / tuner.kind: asha compare "
                             "trainings epoch by epoch: return a list of per-epoch dicts, or remove early stopping")
        self._check_trial(unit["key"])  # never report a score of an interrupted training
        objective = self.oracle.objective
        best, best_epoch, last, last_epoch = best_and_last(history, objective)
        result = {"values": dict(hp.values), "active": list(self.last_read or []), "best": best, "best_epoch": best_epoch,
                  "last": last, "last_epoch": last_epoch, "degenerate": None, "majority_rate": None,
                  "weights": None, "curve": history}
        if confirm:
            scored = best if self.score_mode == "best_epoch" else last
            result["validation"] = split_metrics(scored)
            result["test"] = None
            if self._test_data is not None:
                test_best, _, test_last, _ = best_and_last(self._call(hp, self._test_data, seed), objective)
                result["test"] = split_metrics(test_best if self.score_mode == "best_epoch" else test_last)
        elif getattr(self.fit_spec, "tensorboard", False):
            from pathlib import Path

            from tunecluster.cluster.worker.tensorboard_log import write_history

            write_history(Path(self.directory).parent / "tensorboard", trial, unit["index"], unit.get("count", 1),
                          history, started, active_values(hp.values, self.last_read))
        ended = time.time()
        result["duration_s"] = round(ended - started, 3)
        result["timing"] = {"build_s": 0.0, "fit_s": round(trained - started, 4),
                            "check_s": round(ended - trained, 4), "save_s": 0.0}
        return result


def export_run_trial_best(tuner: FunctionTuner, run, spec, choice: Optional[dict]) -> dict:
    """`best/hyperparameters.json` and `best/metrics.json` for a run_trial search (no model file):
    the best confirmed configuration's best run, else the search's best trial."""
    from keras_tuner.engine import trial as trial_module

    from tunecluster.cluster.worker.export import write_choice

    confirmed = None
    if choice and choice.get("trial"):
        best = trial_module.Trial.from_state(choice["trial"])
        confirmed = choice.get("confirmed")
        validation, test = choice.get("validation"), choice.get("test")
        search_trial = tuner.oracle.get_trial(best.trial_id)
        score, best_step = search_trial.score, search_trial.best_step
    else:
        best = tuner.best_trial()
        if best is None:
            raise RuntimeError("no completed trial to export")
        score, best_step = best.score, best.best_step
        validation = split_metrics({name: float(best.metrics.get_last_value(name)) for name in best.metrics.metrics
                                    if best.metrics.get_last_value(name) is not None})
        test = None
    return write_choice(run, spec, tuner.splits, best, score, best_step, confirmed, validation, test,
                        active=(choice or {}).get("active"),
                        model=None)  # run_trial trains no Keras model: nothing to load
