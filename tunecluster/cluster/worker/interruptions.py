"""Why a worker stops a training before its end: not errors of the training itself, so they
derive from BaseException and pass through Keras and Keras Tuner untouched."""

from __future__ import annotations

from typing import Optional

from tunecluster.core.errors import UsageError


class LeaseLost(BaseException):
    """The chief took this trial back (lease expired); its result would be refused."""


class FatalUsage(BaseException):
    """A usage error inside a trial (e.g. the hypermodel returned no model): stop the worker
    (Keras Tuner would record it as a failed trial and try the next). `key`: the unit it held."""

    def __init__(self, error: UsageError, key: Optional[str] = None):
        super().__init__(str(error))
        self.error = error
        self.key = key


class TrialInterrupted(BaseException):
    """The worker was asked to stop (SIGTERM) in the middle of a trial."""

    def __init__(self, trial_id: Optional[str]):
        super().__init__(trial_id)
        self.trial_id = trial_id
