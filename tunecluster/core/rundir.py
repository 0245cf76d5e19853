"""The run directory (the shared volume of one experiment): its layout, atomic writes, and the
guards that keep an earlier run from being overwritten.

    <run>/spec.yaml              the validated spec as run
    <run>/kt/<name>/             Keras Tuner's own project directory (oracle.json, trial_*/)
    <run>/logs/<role>.log        one log per role
    <run>/cluster.json           the roles the launcher started (pids, address, exit codes)
    <run>/progress.json          the chief's live view: trials, best so far, each worker's trial
    <run>/results.json, .csv     one row per trial
    <run>/best/                  model.keras, hyperparameters.json, metrics.json
    <run>/tensorboard/<trial>/   per-epoch scalars and hyperparameters (HParams), per trial
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Optional

from tunecluster.core.errors import UsageError


class RunDir:
    """Paths inside one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    spec = property(lambda self: self.root / "spec.yaml")
    kt_dir = property(lambda self: self.root / "kt")
    logs = property(lambda self: self.root / "logs")
    cluster = property(lambda self: self.root / "cluster.json")
    progress = property(lambda self: self.root / "progress.json")
    results_json = property(lambda self: self.root / "results.json")
    results_csv = property(lambda self: self.root / "results.csv")
    best = property(lambda self: self.root / "best")
    best_model = property(lambda self: self.root / "best" / "model.keras")
    best_hyperparameters = property(lambda self: self.root / "best" / "hyperparameters.json")
    best_metrics = property(lambda self: self.root / "best" / "metrics.json")
    tensorboard = property(lambda self: self.root / "tensorboard")
    work = property(lambda self: self.root / "work.json")
    confirm = property(lambda self: self.root / "confirm")
    checkpoints = property(lambda self: self.root / "checkpoints")  # resumable trainings (worker/resume.py)

    def log(self, role: str) -> Path:
        return self.logs / f"{role}.log"

    def kt_project(self, name: str) -> Path:
        return self.kt_dir / name

    def exists(self) -> bool:
        return self.spec.is_file()

    def finished(self) -> bool:
        """A run whose chief recorded the end of the search."""
        progress = read_json(self.progress)
        return bool(progress and progress.get("finished"))

    def require_run(self) -> "RunDir":
        if not self.exists():
            raise UsageError(
                f"{self.root} is not a tunecluster run directory (no spec.yaml); "
                "pass --dir with the folder `tunecluster up` used"
            )
        return self


def write_atomic(path: str | Path, text: str, fsync: bool = True) -> None:
    """Write a file so that a crash at any instant leaves either the old or the new content.
    `fsync=False` still survives a killed process (the rename is atomic) but leaves flushing to
    the OS, so a machine crash may lose the last writes: for state rewritten on every trial."""
    path = Path(path)
    try:
        fd, tmp = _temp_beside(path)
    except FileNotFoundError:  # (no mkdir per write: the folder is made when it is missing)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_beside(path)
    try:
        try:
            data = text.encode()
            while data:
                data = data[os.write(fd, data):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_temp_names = itertools.count()


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new private file (0600) beside `path`, named after it, this process and a counter: the
    chief writes hundreds of state files a second, and `tempfile.mkstemp`'s random names cost
    more than the write itself."""
    while True:
        tmp = str(path.parent / f".{path.name}.{os.getpid()}-{next(_temp_names)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
        except FileExistsError:  # left by a killed process that had this pid: take the next name
            continue


def json_in_pieces(data: dict, long_list: str, items: Optional[list[str]] = None) -> str:
    """`json.dumps(data)` (compact) for a mapping with one long list under `long_list`, encoded
    one item at a time (or given encoded, `items`). json's C encoder holds the GIL for a whole
    document: a chief's 9 MB results.json took 200-480 ms, and every RPC handler waited that long;
    item by item, the handlers run between items."""
    head = json.dumps({k: v for k, v in data.items() if k != long_list}, default=str)
    if items is None:
        items = [json.dumps(item, default=str) for item in data.get(long_list) or []]
    body = f"{json.dumps(long_list)}: [" + ", ".join(items) + "]"
    return "{" + body + "}" if head == "{}" else head[:-1] + ", " + body + "}"


def write_json(path: str | Path, data: Any, *, compact: bool = False, fsync: bool = True,
               long_list: Optional[str] = None, items: Optional[list[str]] = None) -> None:
    """`compact`: one line, through json's C encoder (indented output takes its pure-Python path,
    ~10x slower: the chief's periodic progress/results writes use it, the final ones do not);
    with `long_list`, that list's items are encoded one at a time (`json_in_pieces`)."""
    if compact and long_list is not None:
        text = json_in_pieces(data, long_list, items)
    else:
        text = json.dumps(data, default=str) if compact else json.dumps(data, indent=2, default=str)
    write_atomic(path, text + "\n", fsync=fsync)


def read_json(path: str | Path) -> Optional[Any]:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
