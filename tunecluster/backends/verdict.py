"""The one verdict on a followed search, for every backend: did it end well, and if not, the
one line that says why (a `RunFailure`, exit 1, or a `UsageError`, exit 2, when the cause is
bad input such as a hypermodel that fails to import in every worker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from tunecluster.core.errors import RunFailure, UsageError


@dataclass
class Outcome:
    """How a followed cluster ended, as its backend saw it."""

    progress: dict  # the chief's final progress.json ({} when none was written)
    chief_code: Optional[int]  # the chief's exit code (Kubernetes: 0 a Complete chief Job, 1 Failed)
    chief_end: str  # how the chief ended, as words: "exited with code 0", "job ended Complete"
    chief_error: str = ""  # the last error line of the chief's log, when known
    logs_hint: str = ""  # where to read more, e.g. "see `tunecluster logs chief --dir run`"
    failed_roles: list[str] = field(default_factory=list)
    failure: Optional[str] = None  # the backend's own reason the search could not go on
    usage_error: Optional[str] = None  # a role's bad-input line (its exit code 2) that ended the run
    elapsed: float = 0.0

    def summary_lines(self) -> list[str]:
        lines = [f"search ended in {self.elapsed:.1f} s (the chief {self.chief_end})"]
        if self.failed_roles:
            lines.append(f"roles that failed: {', '.join(self.failed_roles)} ({self.logs_hint})")
        return lines


def verdict(outcome: Outcome) -> int:
    """0 when the search finished and its best model (or configuration) was exported; otherwise
    raise the error that says what went wrong, the most specific cause first."""
    progress = outcome.progress
    if outcome.usage_error:
        raise UsageError(outcome.usage_error)
    if outcome.failure:
        raise RunFailure(outcome.failure)
    if progress.get("search_failed"):
        raise RunFailure(f"the search stopped: {progress['search_failed']}")
    export = progress.get("export") or {}
    if export.get("state") == "failed":
        raise RunFailure(f"exporting the best model failed: {export.get('message')}")
    if outcome.chief_code == 2:
        raise UsageError(outcome.chief_error.removeprefix("error: ") or f"the chief refused its input; {outcome.logs_hint}")
    if outcome.chief_code != 0:
        detail = f": {outcome.chief_error}" if outcome.chief_error else f"; {outcome.logs_hint}"
        raise RunFailure(f"the chief {outcome.chief_end}{detail}")
    if not progress.get("finished"):
        raise RunFailure(f"the search did not finish; {outcome.logs_hint}")
    return 0
