"""A `run_trial` that trains nothing (`no_training.py`, `overhead.py`): one hyperparameter, a
score made from it, and an optional fixed sleep (`INSTANT_TRIAL_SECONDS`, default 0) standing for
the training: what the cluster itself costs per trial, as in Ray Tune's bookkeeping test (its
trials are functions that sleep). The space is declared, so every worker starts at once."""

import os
import time

SECONDS = float(os.environ.get("INSTANT_TRIAL_SECONDS", "0"))


def declare_hyperparameters(hp):
    return hp.Int("x", 0, 1_000_000)


def run_trial(hp):
    x = declare_hyperparameters(hp)
    if SECONDS:
        time.sleep(SECONDS)
    return {"val_accuracy": 0.5 + (x % 1000) / 2000.0}
