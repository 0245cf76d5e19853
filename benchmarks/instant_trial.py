"""A `run_trial` that trains nothing (`no_training.py`, `overhead.py`): one hyperparameter, a
score made from it, and an optional fixed sleep (`INSTANT_TRIAL_SECONDS`, default 0) standing for
the training: what the cluster itself costs per trial, as in Ray Tune's bookkeeping test (its
trials are functions that sleep). The space is declared, so every worker starts at once.

With `INSTANT_TRIAL_TRACE` set to a folder, each call appends `x entered returned` (its
hyperparameter and epoch times) to `<folder>/<pid>.txt`: `bookkeeping.py` sets the chief's
hand-out and end of each trial beside them, to split the per-trial overhead."""

import os
import time

SECONDS = float(os.environ.get("INSTANT_TRIAL_SECONDS", "0"))
TRACE = os.environ.get("INSTANT_TRIAL_TRACE")


def declare_hyperparameters(hp):
    return hp.Int("x", 0, 1_000_000)


def run_trial(hp):
    entered = time.time()
    x = declare_hyperparameters(hp)
    if SECONDS:
        time.sleep(SECONDS)
    if TRACE:
        returned = time.time()
        with open(os.path.join(TRACE, f"{os.getpid()}.txt"), "a") as trace:
            trace.write(f"{x} {entered:.6f} {returned:.6f}\n")
    return {"val_accuracy": 0.5 + (x % 1000) / 2000.0}
