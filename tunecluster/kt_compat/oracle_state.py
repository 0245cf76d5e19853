"""Reading and changing a Keras Tuner oracle's private state, in one place.

The chief takes trials back from lost workers, holds a restarted chief's running trials for their
workers, writes the oracle's files itself and stops a search cleanly on too many failed trials.
Keras Tuner offers no public API for any of this, so these functions name every private attribute
and method of `keras_tuner.Oracle` (keras-tuner 1.4.x) that tunecluster uses:

- `reload(oracle)`: Keras Tuner's `reload`, with the trials put back in creation order (it reads
  them in the order the filesystem lists their folders, and its `get_best_trials` breaks equal
  scores by that order: without this a restarted chief and a worker reading the run folder could
  name different best trials);
- `queued(oracle)`: the retry queue (`_retry_queue`, a list; `create_trial` pops from its end);
- `project_dir` / `set_project_dir` / `oracle_file`: where the oracle keeps its files;
- `save_trial(oracle, trial)`: write one trial's state (`_save_trial`, replaceable per instance);
- `random_trial`, `is_duplicate`, `random_state`: what a custom oracle's `populate_space` uses
  (`_random_populate_space`, `_duplicate`, `_random_state`), for the Bayesian oracle;
- `ConsecutiveFailures` / `is_failure_limit(exc)`: the error Keras Tuner raises from `end_trial`
  once `max_consecutive_failed_trials` is reached (tunecluster's replacement raises its own type;
  the message check covers an oracle without it).
"""

from __future__ import annotations

import os


def creation_key(trial_id: str) -> tuple:
    """Keras Tuner's trial ids are creation numbers, zero-padded to a width that a long search
    outgrows ("9" < "10"): order them as numbers, other ids after them by name."""
    return (0, int(trial_id), trial_id) if trial_id.isdigit() else (1, 0, trial_id)


def reload(oracle) -> None:
    """`oracle.reload()` from its project folder, then its trials in creation order."""
    oracle.reload()
    ordered = sorted(oracle.trials.items(), key=lambda item: creation_key(item[0]))
    oracle.trials.clear()
    oracle.trials.update(ordered)


def queued(oracle) -> list:
    """The oracle's retry queue: trial ids handed out again before any new trial (live list)."""
    return oracle._retry_queue


def project_dir(oracle) -> str:
    """`<directory>/<project_name>` (Keras Tuner's property makes the folder when it is missing)."""
    return oracle._project_dir


def set_project_dir(oracle, directory: str, project_name: str) -> None:
    oracle._set_project_dir(directory, project_name)


def oracle_file(oracle) -> str:
    """The oracle's own state file, `oracle.json`."""
    return oracle._get_oracle_fname()


def trial_file(oracle, trial_id: str) -> str:
    return os.path.join(project_dir(oracle), f"trial_{trial_id}", "trial.json")


def save_trial(oracle, trial) -> None:
    oracle._save_trial(trial)


class ConsecutiveFailures(RuntimeError):
    """`max_consecutive_failed_trials` was reached: the search must stop (Keras Tuner raises a
    plain RuntimeError with this message from every later `end_trial`)."""


_FAILURE_LIMIT_TEXT = "consecutive failures"  # keras_tuner.src.engine.oracle._check_consecutive_failures


def is_failure_limit(exc: BaseException) -> bool:
    """Whether `exc` (raised by `end_trial`) says the consecutive-failure limit was reached."""
    return isinstance(exc, ConsecutiveFailures) or (
        isinstance(exc, RuntimeError) and _FAILURE_LIMIT_TEXT in str(exc))


def random_trial(oracle) -> dict:
    """What `populate_space` returns for random values (`_random_populate_space`): a RUNNING status
    with values, or STOPPED when the space is exhausted."""
    return oracle._random_populate_space()


def is_duplicate(oracle, values: dict) -> bool:
    """Whether a trial with these values exists already (`_duplicate`; it records new ones)."""
    return oracle._duplicate(values)


def random_state(oracle):
    """The oracle's seeded NumPy generator (`_random_state`)."""
    return oracle._random_state
