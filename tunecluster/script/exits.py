"""How a role leaves the script early: `RoleExit` passes through the script's own `except
Exception` (a BaseException) up to the launcher, which exits with its code (and logs its reason)."""

from __future__ import annotations

from typing import Optional


class RoleExit(BaseException):
    """Stop running the script: exit with `code`; `reason` is logged as the role's last line."""

    def __init__(self, code: int, reason: Optional[str] = None):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
