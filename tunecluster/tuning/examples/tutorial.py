"""What the Keras Tuner Pima tutorial runs and reports, as data: each claim it makes (quoted with
its own figures), and its budgets. `up --example pima-all` checks these claims against a run
(`tuning/phases.py`); the facts come from the project's notes on the tutorial.

The tutorial's later phases fix values its earlier phases were meant to choose (rmsprop in phases
2-3, 72 units per layer in phase 3, although its phase 2 reported 128 units best); the claims below
are what it reports, never a value it merely fixes.
"""

from __future__ import annotations

# Claims per row of the `pima-all` table. `kind`:
#   winner  - the tutorial's best value of `hyperparameter` in that phase (`value`), and the figure it
#             reports for it when it gives one (`score`);
#   score   - a figure for a phase's winner (`score`), "~" when the tutorial rounds;
#   improvement, dropout - see tuning/phases.py.
# `tolerance`: half a unit of the figure's last digit (the tutorial's rounding).
CLAIMS = [
    {"row": "phase 1: optimizer", "phase": "pima-optimizer", "kind": "winner", "hyperparameter": "optimizer",
     "value": "rmsprop", "score": 0.740, "tolerance": 0.0005,
     "others": {"sgd": 0.650, "adadelta": 0.620, "adam": 0.538},
     "text": "rmsprop best, val accuracy 0.740; sgd 0.650, adadelta 0.620, adam 0.538"},
    {"row": "phase 2: units", "phase": "pima-units", "kind": "winner", "hyperparameter": "units",
     "value": 128, "score": None, "text": "128 units best"},
    {"row": "phase 3: layers", "phase": "pima-layers", "kind": "winner", "hyperparameter": "num_layers",
     "value": 6, "score": None, "text": "6 layers best (each of 72 units, which the tutorial fixes)"},
    {"row": "phase 4: comprehensive", "phase": "pima-comprehensive", "kind": "score", "score": 0.85, "tolerance": 0.005,
     "text": "~0.85 accuracy (6 layers, rmsprop, tuned dropout)"},
    {"row": "baseline", "phase": "pima-baseline", "kind": "score", "score": 0.70, "tolerance": 0.005,
     "text": "~0.70 accuracy for the hand-made model (32 units, one layer, adam)"},
    {"row": "improvement", "phase": "pima-comprehensive", "kind": "improvement", "baseline": "pima-baseline",
     "score": 0.15, "tolerance": 0.005, "text": "15 % improvement over the baseline (~0.85 against ~0.70)"},
    {"row": "dropout", "phase": "pima-comprehensive", "kind": "dropout", "low": 0.2, "high": 0.4,
     "text": "dropout 0.2–0.4 prevents overfitting"},
]

# Budgets: (max_trials, epochs) per phase. "tunecluster" is the embedded specs' own (12 trials of 10
# epochs); "tutorial" is the tutorial's, which gives none for its layers phase (5 x 10 is used) nor for
# its baseline model (one training of 10 epochs, as its comprehensive phase; the confirmation stage
# retrains it).
BUDGETS = {
    "tunecluster": {"pima-optimizer": (12, 10), "pima-units": (12, 10), "pima-layers": (12, 10),
                    "pima-comprehensive": (12, 10), "pima-baseline": (1, 10)},
    "tutorial": {"pima-optimizer": (5, 5), "pima-units": (5, 10), "pima-layers": (5, 10),
                 "pima-comprehensive": (20, 10), "pima-baseline": (1, 10)},
}
DEFAULT_BUDGET = "tunecluster"
BUDGET_NOTES = {
    "tunecluster": "tunecluster's budget",
    "tutorial": "the tutorial's budget (it gives none for the layers phase: 5x10 used)",
}

# `pima-all --chain`: which confirmed winner each phase passes on, as the hypermodel's keyword
# argument (`hypermodel_args`) of each later phase that takes it.
CHAIN = {
    "pima-optimizer": {"optimizer": "optimizer"},  # winner's hyperparameter -> argument name
    "pima-units": {"units": "units"},
    "pima-layers": {"num_layers": "num_layers"},
}
CHAIN_ARGUMENTS = {
    "pima-units": ("optimizer",),
    "pima-layers": ("optimizer", "units"),
    "pima-comprehensive": ("optimizer", "num_layers"),
}
