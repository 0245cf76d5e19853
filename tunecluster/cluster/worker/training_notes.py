"""What a training's TensorBoard session says of how it started when it did not start from
scratch (`tensorboard_log.TrialTensorBoard`'s Text tab): plain text from the trial's Keras Tuner
values and the resume step's outcome, kept free of Keras so that it is testable alone."""

from __future__ import annotations

from typing import Optional


def start_note(values: dict, resumed: Optional[int], promoted: bool) -> Optional[tuple[int, str]]:
    """(epoch, text) for a training that does not start from scratch: promoted (ASHA), continuing
    another trial's weights (Hyperband's later rounds), or resumed from its own checkpoint."""
    parent = values.get("tuner/trial_id")
    if resumed is not None and promoted:
        return resumed, f"promoted from trial {parent}: continues its checkpoint after epoch {resumed}"
    if resumed is not None:
        return resumed, f"resumed from its checkpoint after epoch {resumed} (taken back from another worker)"
    initial = int(values.get("tuner/initial_epoch", 0) or 0)
    if parent is not None and initial:
        return initial, f"continues trial {parent}'s weights after epoch {initial} (a later Hyperband round)"
    return None
