"""`up --example pima-all`: the Pima tutorial's phases and its baseline model one after another (one
run folder each under --dir), then the table of the tutorial's claims beside what this run measured
(`tuning/phases.py`), also written as pima-all.json.

`--budget tutorial` gives each phase the tutorial's trials and epochs; `--chain` passes each phase's
confirmed winner on to the later phases (`examples/tutorial.py`'s CHAIN) instead of the tutorial's
fixed values, and says what it carried.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

from tunecluster.backends.base import UpOptions
from tunecluster.backends.run_folder import check_run_dir, run_dir_for
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, write_json
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.preflight import preflight


def phase_spec(name: str, overrides: Overrides, budget: Optional[str], carried: dict):
    """A phase's spec: the example with the budget, the carried values its hypermodel takes, then
    the command-line overrides (the baseline keeps its single trial)."""
    from tunecluster.tuning.examples import BASELINE, example_spec
    from tunecluster.tuning.examples.tutorial import CHAIN_ARGUMENTS

    args = {a: carried[a] for a in CHAIN_ARGUMENTS.get(name, ()) if a in carried}
    spec = overrides.apply(example_spec(name, budget, args))
    if name == BASELINE and spec.tuner.max_trials != 1:
        spec = Overrides(max_trials=1).apply(spec)
    return spec, args


def carry(name: str, run: RunDir, carried: dict) -> dict:
    """The values a finished phase passes on (its best confirmed configuration's), added to `carried`."""
    from tunecluster.tuning.examples.tutorial import CHAIN
    from tunecluster.tuning.phases import phase_outcome

    passes = CHAIN.get(name)
    if not passes:
        return {}
    winner = phase_outcome(name, run, 0)["winner"]
    if winner is None:
        raise UsageError(f"--chain: {name} found no winner in {run.root}, so the next phases have "
                         "nothing to carry; rerun it, or leave out --chain")
    new = {arg: winner["hyperparameters"][hp] for hp, arg in passes.items() if hp in winner["hyperparameters"]}
    carried.update(new)
    return new


def run_all_phases(root: Path, overrides: Overrides, options: UpOptions, *, force: bool, resume: bool,
                   budget: Optional[str], chain: bool, run_one: Callable, say: Callable,
                   rule: Callable) -> tuple[list, dict]:
    """Run every phase (`run_one(spec, run, options) -> exit code`); stop at the first that fails.
    Returns the outcomes (name, run, code, seconds) and what was carried."""
    from tunecluster.tuning.examples import ALL_PHASE_ORDER

    planned = []
    for name in ALL_PHASE_ORDER:  # check every phase (spec, data, run folder) before anything runs
        spec, _ = phase_spec(name, overrides, budget, {})
        run = run_dir_for(root / name, name)
        preflight(spec)
        if not (resume and run.finished()):
            check_run_dir(run, spec, force=force, resume=resume and run.exists())
        planned.append((name, run))
    outcomes, carried = [], {}
    for name, run in planned:
        spec, args = phase_spec(name, overrides, budget, carried if chain else {})
        if chain and args:
            say(f"{name}: carried from the earlier phases: " + ", ".join(f"{k}={v}" for k, v in args.items()))
        if resume and run.finished():
            say(f"{name}: already finished in {run.root}")
            outcomes.append((name, run, 0, None))
        else:
            rule(name)
            started = time.monotonic()
            phase_options = UpOptions(**{**options.__dict__, "resume": resume and run.exists()})
            code = run_one(spec, run, phase_options)
            outcomes.append((name, run, code, round(time.monotonic() - started, 1)))
            if code != 0:
                break
        if chain:
            carry(name, run, carried)
    return outcomes, carried


def summary(outcomes: list, root: Path, budget: Optional[str], chain: bool, carried: dict) -> tuple[str, list, dict]:
    """The table's title, its rows, and the pima-all.json document (written under `root`)."""
    from tunecluster.tuning.examples.tutorial import BUDGET_NOTES, CLAIMS, DEFAULT_BUDGET
    from tunecluster.tuning.phases import claim_rows, phase_outcome

    budget = budget or DEFAULT_BUDGET
    found = {name: phase_outcome(name, run, code, seconds) for name, run, code, seconds in outcomes}
    rows = claim_rows(CLAIMS, found)
    mode = ("chained: " + ", ".join(f"{k}={v}" for k, v in carried.items())) if chain else \
        "unchained: the tutorial's fixed values"
    sizes = ", ".join(f"{o['phase'].removeprefix('pima-')} {o['budget'][0]}x{o['budget'][1]}"
                      for o in found.values() if o["budget"])
    note = f"{BUDGET_NOTES[budget]}, trials x epochs: {sizes}"
    title = f"Pima tutorial: its claims beside this run ({note}; {mode})"
    document = {"budget": budget, "budget_note": note, "chained": chain, "carried": carried,
                "phases": [{"phase": o["phase"], "run": o["run"], "exit_code": o["exit_code"],
                            "seconds": o["seconds"], "max_trials": (o["budget"] or (None, None))[0],
                            "epochs": (o["budget"] or (None, None))[1]} for o in found.values()],
                "rows": rows}
    write_json(root / "pima-all.json", document)
    return title, rows, document
