"""The spec's `stages`: a two-stage search, broad random then focused Bayesian (the Pima
tutorial's advice), on one cluster whose workers run both stages without restarting.

    stages:
      - {kind: random, max_trials: 50}
      - {kind: bayesian, max_trials: 20}

The chief runs one oracle (`tuning/staged_oracle.py`): the first stage's trials are random draws;
once every one of them has ended, the Bayesian stage starts, and all of them are its initial
points (its Gaussian process is fitted on every completed trial of the first stage). The stages
set `tuner.kind` (bayesian, the oracle that ends the search), `tuner.max_trials` (their sum) and
`tuner.bayesian.num_initial_points` (the first stage's trials); the other tuner keys apply as
usual. Absent or empty: one oracle as `tuner` says.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class StageSpec(BaseModel):
    """One stage of a staged search."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["random", "bayesian"]
    max_trials: int = Field(ge=1, description="Trials of this stage.")


def _random_then_bayesian(stages: list) -> list:
    if stages and [s.kind for s in stages] != ["random", "bayesian"]:
        raise ValueError("give two stages, kind random then kind bayesian (the only staged search supported), "
                         "or none")
    return stages


Stages = Annotated[list[StageSpec], AfterValidator(_random_then_bayesian)]
STAGES = Field(default_factory=list, description="A two-stage search: [{kind: random, max_trials: N}, "
               "{kind: bayesian, max_trials: M}]; the Bayesian stage starts from every trial of the first.")


def apply_stages(raw: dict, max_trials_given: bool = False, tuner_given: bool = False) -> dict:
    """A spec mapping with its stages written into `tuner` (kind, max_trials, num_initial_points);
    UsageError when --max-trials or --tuner would contradict them."""
    from tunecluster.core.errors import UsageError

    stages = raw.get("stages") or []
    if not stages:
        return raw
    if max_trials_given or tuner_given:
        raise UsageError(f"{'--max-trials' if max_trials_given else '--tuner'}: the spec's stages set the "
                         "tuner and its number of trials; change the stages instead")
    raw["tuner"]["kind"] = "bayesian"
    raw["tuner"]["max_trials"] = sum(int(s["max_trials"]) for s in stages)
    raw["tuner"]["bayesian"]["num_initial_points"] = int(stages[0]["max_trials"])
    return raw
