"""What the process-level tests share: reading a JSON file that a run may be rewriting, and
waiting (bounded) for a condition on the run folder, failing early when the watched `up` ended."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable


def read_json(path: Path) -> dict:
    """The file's JSON, or {} while it is missing or being replaced."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def wait_until(what: str, check: Callable[[], Any], timeout: float, process=None, interval: float = 0.1) -> Any:
    """`check()`'s first true value within `timeout` seconds; an AssertionError naming `what` when
    it never comes, or as soon as `process` (a Popen) has ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"`up` ended before {what}")
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """`wait_until` with the condition first (no process to watch)."""
    return wait_until(what, check, timeout, interval=interval)
