"""The spec's `final` section: after the search and the confirmation stage, train the chosen
configuration longer before exporting it (the Pima tutorial's "extended training for the final
model"), keeping its best epoch on the validation rows.

    final:
      epochs: 100                  # the last epoch of the final training
      early_stopping_patience: 10  # stop after this many epochs without a better objective (null: never)
      from_checkpoint: true        # continue the chosen model (initial_epoch = fit.epochs), else train afresh

Absent (`final: null`, the default): the chosen model is exported as it is. `best/metrics.json`
then reports the exported model and the chosen checkpoint side by side (`final.checkpoint`,
`final.exported`), so a longer training that overfits shows.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class FinalSpec(BaseModel):
    """Final extended training of the exported configuration."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    epochs: int = Field(100, ge=1, description="The last epoch of the final training (Keras' `epochs`).")
    early_stopping_patience: Optional[int] = Field(
        None, ge=1, description="Stop after this many epochs without a better objective on the validation "
        "rows (null: train all epochs); the best epoch's weights are exported either way.")
    from_checkpoint: bool = Field(
        True, description="Continue the chosen model from its checkpoint (initial_epoch = fit.epochs, as the "
        "tutorial does), else train the configuration afresh from epoch 0.")


FINAL = Field(None, description="Train the chosen configuration longer before exporting it (null: don't).")


def check_final(spec) -> None:
    """UsageError when the spec's `final` cannot run: no Keras model, or no epoch left to train."""
    from tunecluster.core.errors import UsageError

    final = spec.final
    if final is None:
        return
    if spec.run_trial:
        raise UsageError("final: a run_trial search exports no Keras model to train further; remove final")
    if final.from_checkpoint and final.epochs <= spec.fit.epochs:
        raise UsageError(f"final.epochs ({final.epochs}) must be more than fit.epochs ({spec.fit.epochs}) "
                         "when final.from_checkpoint continues the search's training; raise final.epochs")
