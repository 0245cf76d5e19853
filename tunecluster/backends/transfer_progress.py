"""How a backend reports the bytes of a long transfer (`upload`, `pull`) without knowing how they
are shown: the command line passes a Rich progress bar (`cli/transfer_commands.py`), tests and
other callers pass nothing."""

from __future__ import annotations

from typing import Optional, Protocol


class TransferProgress(Protocol):
    def start(self, label: str, total: Optional[int]) -> None:
        """A new file or stream of `total` bytes (None: unknown) begins."""

    def advance(self, count: int) -> None:
        """`count` more bytes went through."""

    def finish(self) -> None:
        """The current file or stream is done."""


class NoProgress:
    """Shows nothing."""

    def start(self, label: str, total: Optional[int]) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def finish(self) -> None:
        pass
