"""Which spec a command runs: `-f FILE`, else ./tunecluster.yaml, else the embedded default
example (the Pima comprehensive search)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment, load_spec

DEFAULT_SPEC = "tunecluster.yaml"


def resolve_spec(spec_file: Optional[str], example: Optional[str],
                 budget: Optional[str] = None) -> tuple[Experiment, str]:
    """The spec to run and where it came from: -f FILE, ./tunecluster.yaml, or an example (with
    `budget`, `up --budget`, for a Pima phase)."""
    from tunecluster.tuning.examples import DEFAULT_EXAMPLE, PHASES, example_spec

    if spec_file and example:
        raise UsageError("give either -f/--file or --example, not both")
    if budget is not None and example not in (*PHASES, "pima"):
        raise UsageError("--budget sets the trials and epochs of the Pima examples; use it with "
                         "--example pima-all or a phase (pima-optimizer, pima-units, ...)")
    if example:
        return example_spec(example, budget), f"example {example}"
    if spec_file:
        return load_spec(spec_file), spec_file
    if Path(DEFAULT_SPEC).is_file():
        return load_spec(DEFAULT_SPEC), DEFAULT_SPEC
    return example_spec(DEFAULT_EXAMPLE), f"example {DEFAULT_EXAMPLE} (no {DEFAULT_SPEC} here)"
