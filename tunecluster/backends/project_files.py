"""Which files of a user's project folder travel to the containers (compose copies them into the
run's input folder, Kubernetes packs them into ConfigMaps): everything except what .gitignore /
.tunecluster-ignore list, caches, virtual environments, version control, run folders, links out of
the folder and (optionally) data files over a size. A folder with more than MAX_FILES files, or
more bytes than the caller allows, is refused with one line saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from tunecluster.core.errors import UsageError

MAX_FILES = 5000  # a folder with more files is not a project folder (a home directory, a dataset)
SKIPPED_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache",
                ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".ipynb_checkpoints", "tunecluster-runs",
                ".eggs", "build", "dist"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".so.tmp", ".DS_Store")
IGNORE_FILES = (".gitignore", ".tunecluster-ignore")


def inside(path: Path, folders: Iterable[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def _ignore_spec(root: Path):
    import pathspec

    lines: list[str] = []
    for name in IGNORE_FILES:
        if (root / name).is_file():
            lines += (root / name).read_text(errors="replace").splitlines()
    return pathspec.PathSpec.from_lines("gitwildmatch", lines)


def project_files(root: Path, *, exclude: Iterable[Path] = (), file_limit: int, raw_limit: int,
                  remedy: str) -> tuple[list[Path], list[str]]:
    """The files of `root` to carry (sorted walk) and those left out, as "rel (why)". Non-Python
    files over `file_limit` bytes are left out; over MAX_FILES files or `raw_limit` bytes in all,
    a UsageError that ends with `remedy` (what the user can do on this backend)."""
    ignored = _ignore_spec(root)
    excluded = {Path(p).resolve() for p in exclude}
    chosen: list[Path] = []
    left_out: list[str] = []
    total = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        rel_dir = here.relative_to(root)
        kept_dirs = []
        for name in sorted(dirs):
            sub = here / name
            rel = (rel_dir / name).as_posix() + "/"
            if name in SKIPPED_DIRS or sub.is_symlink() or (sub / "pyvenv.cfg").is_file() or ignored.match_file(rel):
                continue
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(files):
            path = here / name
            rel = (rel_dir / name).as_posix()
            if name.endswith(SKIPPED_SUFFIXES) or ignored.match_file(rel) or path.resolve() in excluded:
                continue
            if path.is_symlink() and not inside(path.resolve(), [root.resolve()]):
                left_out.append(f"{rel} (a link out of the project)")
                continue
            if not path.is_file():
                continue
            size = path.stat().st_size
            if size > file_limit and not name.endswith(".py"):
                left_out.append(f"{rel} ({size // 1024} KiB)")
                continue
            chosen.append(path)
            total += size
            if len(chosen) > MAX_FILES or total > raw_limit:
                too = f"{len(chosen)} files" if len(chosen) > MAX_FILES else f"over {raw_limit // 2**20} MiB"
                raise UsageError(f"the project folder {root} holds {too} to carry to the containers; {remedy}")
    return chosen, left_out
