"""What a Keras Tuner script's own tuner says about its search, as tunecluster's spec sections.

`up --script` writes a spec before the script has run (`script_experiment`: the run's name, the
workers, the cluster settings); the chief then learns the rest from the oracle the script built
and rewrites the run's spec.yaml with it (`tuner_section`), so that `status`, `results` and
`report` show the script's kind, objective, max_trials and seed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment

KINDS = {
    "RandomSearchOracle": "random",
    "GridSearchOracle": "grid",
    "BayesianOptimizationOracle": "bayesian",
    "HyperbandOracle": "hyperband",
}


def experiment_name(script: Path) -> str:
    """The run's name from the script's file name: `my_search.py` -> `my-search`."""
    name = re.sub(r"[^a-z0-9-]+", "-", script.stem.lower()).strip("-")
    return (name or "script")[:40].strip("-") or "script"


SETTINGS_KEYS = ("name", "cluster")  # what `up --script -f FILE` takes from FILE


def script_settings(path: Path) -> tuple[Experiment, Optional[str]]:
    """`up --script -f FILE`: the cluster settings (and the run's name) of a spec file that holds
    nothing else; the script decides the rest. Returns the spec and the name it gives, if any."""
    import yaml

    from tunecluster.tuning.spec import load_spec

    spec = load_spec(path)
    raw = yaml.safe_load(Path(path).read_text()) or {}
    extra = [key for key in raw if key not in SETTINGS_KEYS]
    if extra:
        raise UsageError(f"{path}: {extra[0]}: does not go with --script (the script's tuner and search() decide "
                         "it); keep only name: and cluster: in the file")
    return spec, raw.get("name")


def script_experiment(script: Path, workers: Optional[int] = None, base: Optional[Experiment] = None,
                      name: Optional[str] = None) -> Experiment:
    """The spec `up --script` writes: the script's name (or `name`), the cluster settings of `base`
    (`-f FILE`), no hypermodel (the script has it), no confirmation stage (the script's own fit
    arguments are not known outside it)."""
    if not script.is_file():
        raise UsageError(f"--script {script}: no such file; give the path of your Keras Tuner script")
    if script.suffix != ".py":
        raise UsageError(f"--script {script}: not a Python file; give the .py file that calls tuner.search()")
    data = (base.model_dump(mode="json") if base is not None else {})
    data["name"] = name or experiment_name(script)
    data.update(hypermodel=None, run_trial=None)
    data["confirm"] = {**data.get("confirm", {}), "enabled": False}
    if workers is not None:
        data["cluster"] = {**data.get("cluster", {}), "workers": workers}
    return Experiment.model_validate(data)


def tuner_section(spec: Experiment, oracle, fit_kwargs: dict) -> Experiment:
    """`spec` with its tuner (and fit epochs/batch size) taken from the script's oracle and its
    `search()` arguments."""
    objective = oracle.objective
    direction = getattr(objective, "direction", "max")
    tuner = spec.tuner.model_dump()
    tuner.update(
        kind=KINDS.get(type(oracle).__name__, KINDS.get(type(oracle).__mro__[1].__name__, "random")),
        objective=getattr(objective, "name", str(objective)),
        direction=direction if direction in ("max", "min") else "max",
        seed=getattr(oracle, "seed", None),
        max_retries_per_trial=getattr(oracle, "max_retries_per_trial", tuner["max_retries_per_trial"]),
        max_consecutive_failed_trials=getattr(oracle, "max_consecutive_failed_trials",
                                              tuner["max_consecutive_failed_trials"]),
    )
    if getattr(oracle, "max_trials", None):
        tuner["max_trials"] = int(oracle.max_trials)
    if tuner["kind"] == "hyperband":
        tuner["hyperband"] = {"max_epochs": int(oracle.max_epochs), "factor": int(oracle.factor),
                              "hyperband_iterations": int(oracle.hyperband_iterations)}
    fit = spec.fit.model_dump()
    if isinstance(fit_kwargs.get("epochs"), int) and fit_kwargs["epochs"] > 0:
        fit["epochs"] = fit_kwargs["epochs"]
    if isinstance(fit_kwargs.get("batch_size"), int) and fit_kwargs["batch_size"] > 0:
        fit["batch_size"] = fit_kwargs["batch_size"]
    return spec.model_copy(update={"tuner": type(spec.tuner).model_validate(tuner),
                                   "fit": type(spec.fit).model_validate(fit)})
