"""The book's journal: who ran each trial and when, on disk the moment it changes.

The chief's book (`book.py`) reaches results.json through the state writer, at most every
~0.3 s and later under load. A chief killed in between used to come back with the last
results.json: a trial that started or ended in that window lost its start, its end, its worker
(results.json then showed a COMPLETED trial with no end time, or a promotion's start taken
again after the restart). Now each change of a trial's entry is appended here, one JSON line
(the whole entry, numbered under the book's lock and written after it: the highest number of a
trial wins), before the call that made it returns; the page cache keeps it through a SIGKILL,
as the trial journal does (`journal.py`, no fsync).

The state writer starts a new file when it copies the book for results.json (`rotate`) and
deletes the old one once results.json is written (`retire`); a restarted chief replays every
file left on top of the last results.json (`replay`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Optional

NAME = "book.journal"  # <run>/book.journal.<n>


class BookJournal:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._fd: Optional[int] = None
        self._path: Optional[Path] = None
        self._lock = threading.Lock()
        self._inherited = [path for path, _ in files(self.folder)]  # a previous chief's, replayed
        self.chief = time.time_ns()  # this chief's changes come after a previous chief's

    def append(self, trial_id: str, number: int, meta: dict) -> None:
        """The trial's entry as it was at its change `number` (the book numbers them under its
        lock and writes them after: lines may come out of order; replay orders them)."""
        line = (json.dumps({"trial_id": trial_id, "chief": self.chief, "n": number, "meta": meta},
                           default=str) + "\n").encode()
        with self._lock:
            if self._fd is None:
                file_number = max([n for _, n in files(self.folder)], default=0) + 1
                self._path = self.folder / f"{NAME}.{file_number}"
                self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            while line:  # one write for a line
                line = line[os.write(self._fd, line):]

    def rotate(self) -> list[Path]:
        """Later lines go to a new file; returns the files written so far (and a previous
        chief's): retire them once what they hold is written elsewhere."""
        with self._lock:
            fd, path, self._fd, self._path = self._fd, self._path, None, None
            old, self._inherited = self._inherited, []
        if fd is not None:
            os.close(fd)
        return old + ([path] if path is not None else [])

    def keep(self, paths: list[Path]) -> None:
        """Files `rotate` returned whose contents were not written elsewhere after all: the
        next `rotate` returns them again."""
        with self._lock:
            self._inherited = list(paths) + self._inherited

    @staticmethod
    def retire(paths: list[Path]) -> None:
        for path in paths:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


def files(folder: Path) -> list[tuple[Path, int]]:
    """The journal files in `folder` as (path, number), oldest first."""
    found = []
    for path in Path(folder).glob(f"{NAME}.*"):
        number = path.name.rpartition(".")[2]
        if number.isdigit():
            found.append((path, int(number)))
    return sorted(found, key=lambda item: item[1])


def replay(folder: Path) -> dict[str, dict]:
    """trial id -> its latest journaled entry, from every file in `folder` (a torn last line,
    from a machine crash, is skipped). The files stay until the new chief's writer retires them."""
    latest: dict[str, tuple[tuple, dict]] = {}
    for path, _ in files(folder):
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                    trial_id, order = str(entry["trial_id"]), (int(entry["chief"]), int(entry["n"]))
                    if trial_id not in latest or order > latest[trial_id][0]:
                        latest[trial_id] = (order, dict(entry["meta"]))
                except (ValueError, KeyError, TypeError):
                    continue
    return {trial_id: meta for trial_id, (_, meta) in latest.items()}
