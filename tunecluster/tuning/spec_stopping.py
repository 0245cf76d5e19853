"""The spec's keys for stopping bad trials early and for trainings that resume.

Kept out of `spec.py` (one job per module); `TunerSpec` and `FitSpec` take these fields from the
two bases below, so the keys live where users look for them:

    tuner:
      kind: asha                  # or random / grid / bayesian with early_stopping:
      asha: {min_epochs: 1, max_epochs: 27, reduction_factor: 3}
      early_stopping: {kind: median, grace_epochs: 2, min_trials: 3}
      max_time: 8h                # no new trial starts 8 hours after the first one did
    fit:
      checkpoint_seconds: 30      # a resumable checkpoint every 30 s, at an epoch end or within a long epoch (0: every epoch end; null: none)
      keep_checkpoints: false

Median stopping (`early_stopping`) applies to random, grid and Bayesian searches; ASHA and
Hyperband stop trainings by their own rules. See docs/early-stopping.md.
"""

from __future__ import annotations

import re
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_CONFIG = ConfigDict(extra="forbid", validate_assignment=True)


class EarlyStoppingSpec(BaseModel):
    """Median stopping: a training whose best value so far is worse than the median of the
    completed trials' best values at the same epoch stops at its next epoch boundary."""

    model_config = _CONFIG
    kind: Literal["median"] = "median"
    grace_epochs: int = Field(1, ge=0, description="Epochs every training runs before it can be stopped.")
    min_trials: int = Field(3, ge=1, description="Completed trials that reached an epoch before the "
                            "median at that epoch is used.")


class AshaSpec(BaseModel):
    """Asynchronous successive halving (`tuner.kind: asha`): rungs at min_epochs * factor^k."""

    model_config = _CONFIG
    min_epochs: int = Field(1, ge=1, description="Epochs of the bottom rung.")
    max_epochs: int = Field(27, ge=1, description="Epochs of the top rung (a full training).")
    reduction_factor: int = Field(3, ge=2, description="eta: the top 1/eta of a rung is promoted.")

    @model_validator(mode="after")
    def _ordered(self) -> "AshaSpec":
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) must not exceed max_epochs ({self.max_epochs})")
        return self

    def rungs(self) -> list[int]:
        """The epochs of each rung, bottom first; the last is max_epochs."""
        epochs, rungs = self.min_epochs, []
        while epochs < self.max_epochs:
            rungs.append(epochs)
            epochs *= self.reduction_factor
        return rungs + [self.max_epochs]


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value: Union[str, float, int]) -> float:
    """Seconds of a duration given as a number of seconds or as "90s", "30m", "8h", "1.5d";
    ValueError saying how to write one otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(f"{value!r} is not a duration: write seconds (3600) or a number with s, m, h "
                             "or d (90s, 30m, 8h)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{value!r}: the time budget must be positive (or null for none)")
    return seconds


class StoppingFields(BaseModel):
    """`tuner.early_stopping`, `tuner.asha` and `tuner.max_time` (a base of `TunerSpec`)."""

    model_config = _CONFIG
    early_stopping: Optional[EarlyStoppingSpec] = Field(
        None, description="Median stopping for random, grid and Bayesian searches (null: off).")
    asha: AshaSpec = Field(default_factory=AshaSpec, description="Used by kind: asha.")
    max_time: Optional[float] = Field(
        None, description="Wall-clock budget of the search, in seconds or as 90s / 30m / 8h: once this long "
        "has passed since its first trial started, no new trial (nor ASHA promotion) starts; running "
        "trainings finish, then the confirmation stage runs. A resumed run counts from the same first "
        "start (`up --resume --max-time` gives a new budget). null: no budget.")

    @field_validator("max_time", mode="before")
    @classmethod
    def _duration(cls, value):
        return None if value is None else duration_seconds(value)

    @model_validator(mode="after")
    def _stopping_fits_the_kind(self):
        kind = getattr(self, "kind", None)
        if self.early_stopping is not None and kind in ("hyperband", "asha"):
            raise ValueError(f"early_stopping is for random, grid and bayesian searches; {kind} stops "
                             "trainings by its own rungs: remove tuner.early_stopping")
        return self


class CheckpointFields(BaseModel):
    """`fit.checkpoint_seconds` and `fit.keep_checkpoints` (a base of `FitSpec`)."""

    model_config = _CONFIG
    checkpoint_seconds: Optional[float] = Field(
        30.0, ge=0, description="A resumable checkpoint (weights, optimizer state, epoch) at an epoch end, or "
        "within an epoch longer than this, when at least this many seconds passed since the training started or "
        "last wrote one (0: every epoch end; null: none). A training taken back continues from it on the next worker.")
    keep_checkpoints: bool = Field(False, description="Keep finished trainings' checkpoints (<run>/checkpoints).")


def stops_early(tuner) -> bool:
    """Whether trainings of this search may end before their last epoch by the chief's decision."""
    return tuner.early_stopping is not None or tuner.kind == "asha"
