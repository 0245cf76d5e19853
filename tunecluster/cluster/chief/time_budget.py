"""The search's wall-clock budget (`tuner.max_time`): once it has passed since the search's first
trial started, the chief starts no new trial, for tunecluster workers (`NextWork`) and plain Keras
Tuner workers (`CreateTrial`) alike; trainings already running finish and the confirmation stage
runs as after `max_trials`.

The start is the book's `search_started_at`: the first trial's start, kept across a chief restart
and `up --resume` (from the last results.json), so a budget is wall-clock time since the search
began, time the run was down included; `up --resume --max-time` gives a resumed run a new budget.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

log = logging.getLogger("tunecluster.chief")


class TimeBudget:
    def __init__(self, max_time: Optional[float], book):
        self.max_time = max_time
        self.book = book
        self.reached_at: Optional[float] = None

    def spent(self, now: Optional[float] = None) -> bool:
        """Whether no new trial may start: True from the moment the budget has passed (then for good)."""
        if self.max_time is None:
            return False
        if self.reached_at is not None:
            return True
        started = self.book.search_started_at
        now = time.time() if now is None else now
        if started is None or now - started < self.max_time:
            return False
        self.reached_at = now
        return True

    def note(self) -> Optional[str]:
        """The line that says the budget ended the search (None while it has not)."""
        if self.reached_at is None:
            return None
        return (f"time budget reached: tuner.max_time {self.max_time:g} s passed since the first trial started; "
                "no new trial started after it")

    def summary(self) -> Optional[dict]:
        """For progress.json (None without a budget)."""
        if self.max_time is None:
            return None
        return {"max_time": self.max_time, "started_at": self.book.search_started_at, "reached_at": self.reached_at}
