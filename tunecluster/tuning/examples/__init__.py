"""The embedded examples: the four Pima phases and the tutorial's baseline model as ready-to-run
specs, a model-free one (`pima-forest`: a scikit-learn forest through `run_trial`), and `init`'s
template. The tutorial's claims and budgets are in `tutorial.py`.

`pima-*` keep the tutorial's 80/20 train/validation split (random_state=42) so results compare
with it; the template that `tunecluster init` writes holds out a test split as well (60/20/20).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment, validate_spec

PHASES = {
    "pima-optimizer": "build_optimizer",
    "pima-units": "build_units",
    "pima-layers": "build_layers",
    "pima-comprehensive": "build_comprehensive",
    "pima-baseline": "build_baseline",
    "pima-conditional": "build_conditional",  # not one of the tutorial's phases: its conditional space
}
# Model-free examples: a `run_trial` function instead of a hypermodel (file in this package).
RUN_TRIAL_EXAMPLES = {
    "pima-forest": ("forest.py", "run_trial"),
}
DEFAULT_EXAMPLE = "pima-comprehensive"
ALL_PHASES = "pima-all"  # `up --example pima-all`: the phases below one after another
ALL_PHASE_ORDER = ["pima-optimizer", "pima-units", "pima-layers", "pima-comprehensive", "pima-baseline"]
BASELINE = "pima-baseline"  # one configuration (Fixed values): a search of one trial, then confirmed


def comprehensive_space():
    """The hyperparameters `pima.build_comprehensive` registers with 10 layers: all 32."""
    from keras_tuner.engine.hyperparameters import HyperParameters

    hp = HyperParameters()
    hp.Int("num_layers", 1, 10)
    for i in range(10):
        hp.Int(f"units_{i}", 32, 512, step=32)
        hp.Choice(f"activation_{i}", ["relu", "tanh", "sigmoid"])
        hp.Float(f"dropout_{i}", 0.1, 0.9, step=0.1)
    hp.Choice("optimizer", ["adam", "sgd", "rmsprop", "adadelta"])
    return hp


def example_dir() -> Path:
    return Path(str(resources.files(__package__)))


def csv_path() -> Path:
    return example_dir() / "diabetes.csv"


def _phase_dict(name: str, hypermodel: str, csv: str, test_fraction: float = 0.0, key: str = "hypermodel") -> dict:
    return {
        "name": name,
        key: hypermodel,
        "data": {
            "csv": csv,
            "target": "Outcome",
            "validation_fraction": 0.2,
            "test_fraction": test_fraction,
            "split_seed": 42,
        },
        "tuner": {
            "kind": "random",
            "objective": "val_accuracy",
            "direction": "max",
            "max_trials": 12,
            "executions_per_trial": 1,
            "seed": 1,
        },
        "fit": {"epochs": 10, "batch_size": 32},
        "cluster": {"backend": "local", "workers": 2},
    }


def _budgeted(raw: dict, name: str, budget: Optional[str]) -> dict:
    """A Pima phase's trials and epochs from a budget of `tutorial.BUDGETS` (None: the default);
    the baseline, one configuration, is confirmed alone (confirm.top 1)."""
    from tunecluster.tuning.examples.tutorial import BUDGETS, DEFAULT_BUDGET

    budget = budget or DEFAULT_BUDGET
    if budget not in BUDGETS:
        raise UsageError(f"--budget: unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    if name in BUDGETS[budget]:
        raw["tuner"]["max_trials"], raw["fit"]["epochs"] = BUDGETS[budget][name]
    if name == BASELINE:
        raw["confirm"] = {"top": 1}
    return raw


def example_spec(name: str = DEFAULT_EXAMPLE, budget: Optional[str] = None,
                 hypermodel_args: Optional[dict] = None) -> Experiment:
    """The embedded spec of one Pima phase, with absolute paths into the installed package;
    `budget` (tutorial.BUDGETS) sets its trials and epochs, `hypermodel_args` its fixed values."""
    if name == "pima":
        name = DEFAULT_EXAMPLE
    if name in RUN_TRIAL_EXAMPLES:
        file, function = RUN_TRIAL_EXAMPLES[name]
        raw = _phase_dict(name, f"tunecluster.tuning.examples.{file[:-3]}:{function}", str(csv_path()),
                          key="run_trial")
        return validate_spec(raw, f"example {name}")
    if name not in PHASES:
        raise UsageError(f"--example: unknown example {name!r}; choose one of {', '.join(known_examples())}")
    hypermodel = f"tunecluster.tuning.examples.pima:{PHASES[name]}"
    raw = _budgeted(_phase_dict(name, hypermodel, str(csv_path())), name, budget)
    if hypermodel_args:
        raw["hypermodel_args"] = dict(hypermodel_args)
    return validate_spec(raw, f"example {name}")


def known_examples() -> list[str]:
    return [*PHASES, *RUN_TRIAL_EXAMPLES, ALL_PHASES]


TEMPLATE_HEADER = """\
# tunecluster experiment spec. Every key has a default; `tunecluster up` runs it.
# Reference: docs/spec.md. Paths are relative to this file.
"""


SCRIPT_EXAMPLE = "pima-script"  # the comprehensive search as a plain Keras Tuner script (`up --script`)


def write_template(target: Path, name: str = "pima", force: bool = False) -> list[Path]:
    """Write tunecluster.yaml, model.py (forest.py for pima-forest) and diabetes.csv into `target`
    (never over existing files)."""
    import yaml

    phase = DEFAULT_EXAMPLE if name == "pima" else name
    if phase == SCRIPT_EXAMPLE:
        return _write_files({target / "pima_search.py": (example_dir() / "pima_script.py").read_text(),
                             target / "diabetes.csv": csv_path().read_text()}, target, force)
    if phase in RUN_TRIAL_EXAMPLES:
        source, function = RUN_TRIAL_EXAMPLES[phase]
        spec = _phase_dict(phase, f"{source}:{function}", "diabetes.csv", test_fraction=0.2, key="run_trial")
        code = target / source
    elif phase in PHASES:
        source = "pima.py"
        spec = _budgeted(_phase_dict(phase, f"model.py:{PHASES[phase]}", "diabetes.csv", test_fraction=0.2),
                         phase, None)
        code = target / "model.py"
    else:
        raise UsageError(f"--example: unknown example {name!r}; choose pima or one of "
                         f"{', '.join([*PHASES, *RUN_TRIAL_EXAMPLES, SCRIPT_EXAMPLE])}")
    spec["name"] = phase
    files = {
        target / "tunecluster.yaml": TEMPLATE_HEADER + yaml.safe_dump(spec, sort_keys=False),
        code: (example_dir() / source).read_text(),
        target / "diabetes.csv": csv_path().read_text(),
    }
    return _write_files(files, target, force)


def _write_files(files: dict, target: Path, force: bool) -> list[Path]:
    existing = [p.name for p in files if p.exists()]
    if existing and not force:
        raise UsageError(
            f"init: {', '.join(existing)} already exist in {target}; move them away or pass --force"
        )
    for path, text in files.items():
        path.write_text(text)
    return list(files)
