"""The user's project folder as the pods get it when the code is not in the image: which folder
holds the hypermodel / run_trial / data loader (and their sibling modules and packages), the files
of it worth carrying (minus .gitignore / .tunecluster-ignore patterns, caches, virtual
environments, version control, run folders and data files over a size), packed as a reproducible
tar.gz that is cut into ConfigMap-sized parts. An init container joins the parts, checks the
archive's SHA-256 and unpacks it into `/code`, which is on the pods' PYTHONPATH.

Nothing is written: the size checks run before `up` writes its run folder.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import sysconfig
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError

CODE_MOUNT = "/code"
PART_BYTES = 176 * 1024  # base64 of a part + the object < kubectl's 256 KiB last-applied annotation
MAX_FILES = 5000  # a folder with more files is not a project folder (a home directory, a dataset)
SKIPPED_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache",
                ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".ipynb_checkpoints", "tunecluster-runs",
                ".eggs", "build", "dist"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".so.tmp", ".DS_Store")
IGNORE_FILES = (".gitignore", ".tunecluster-ignore")


@dataclass
class CodeBundle:
    """The carried project: its folder, the tar.gz, the files in it and those left out."""

    root: Path
    archive: bytes
    files: list[str]
    left_out: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()

    def parts(self, size: int = PART_BYTES) -> list[bytes]:
        return [self.archive[i:i + size] for i in range(0, len(self.archive), size)] or [b""]


def _installed_roots() -> list[Path]:
    """Folders whose modules the image provides (site-packages, the standard library, tunecluster)."""
    roots = {Path(p).resolve() for key in ("purelib", "platlib", "stdlib", "platstdlib")
             if (p := sysconfig.get_paths().get(key))}
    roots.add(Path(__file__).resolve().parents[2])  # the tunecluster package itself
    return sorted(roots)


def _inside(path: Path, folders: Iterable[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def _package_top(folder: Path) -> Path:
    """The folder above the outermost package that holds `folder` (folders with __init__.py)."""
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        folder = folder.parent
    return folder


def code_root(ref: str) -> Optional[Path]:
    """The project folder a code reference needs, or None when the image provides it (an installed
    module) or it cannot be found here (then it must be in the image)."""
    target = ref.rsplit(":", 1)[0]
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_absolute() or not path.is_file():
            return None
        return _package_top(path.resolve().parent)
    top = target.split(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    if found.submodule_search_locations:
        location = Path(next(iter(found.submodule_search_locations))).resolve()
    elif found.origin and found.origin not in ("built-in", "frozen"):
        location = Path(found.origin).resolve()
    else:
        return None
    if _inside(location, _installed_roots()):
        return None
    return location.parent


def project_root(refs: list[str], project_dir: Optional[str]) -> Optional[Path]:
    """The one folder to carry for all of the spec's code references (None: nothing to carry)."""
    roots = [root for root in (code_root(ref) for ref in refs) if root is not None]
    if project_dir:
        folder = Path(project_dir).expanduser().resolve()
        if not folder.is_dir():
            raise UsageError(f"cluster.kubernetes.project_dir: {folder} is not a folder; name the folder that "
                             "holds your model's modules")
        for root, ref in zip(roots, refs):
            if root != folder and folder not in root.parents:
                raise UsageError(f"cluster.kubernetes.project_dir: {folder} does not hold {ref.rsplit(':', 1)[0]}; "
                                 "name a folder above it")
        return folder
    if not roots:
        return None
    return Path(os.path.commonpath([str(r) for r in roots]))


def _ignore_spec(root: Path):
    import pathspec

    lines: list[str] = []
    for name in IGNORE_FILES:
        if (root / name).is_file():
            lines += (root / name).read_text(errors="replace").splitlines()
    return pathspec.PathSpec.from_lines("gitwildmatch", lines)


def _walk(root: Path, exclude: set[Path], file_limit: int, raw_limit: int) -> tuple[list[Path], list[str]]:
    ignored = _ignore_spec(root)
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
            if name.endswith(SKIPPED_SUFFIXES) or ignored.match_file(rel) or path.resolve() in exclude:
                continue
            if path.is_symlink() and not _inside(path.resolve(), [root.resolve()]):
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
                raise UsageError(
                    f"the project folder {root} holds {too} to carry to the pods; put the model in a folder of "
                    "its own (cluster.kubernetes.project_dir), list what it does not need in .tunecluster-ignore, "
                    "or bake the code into the image and set cluster.kubernetes.code: image")
    return chosen, left_out


def _tar(root: Path, paths: list[Path]) -> bytes:
    """A reproducible tar.gz (sorted, no owners, no times): the same project gives the same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in paths:
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0, 0, "", ""
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def bundle_project(root: Path, *, limit_kib: int, file_limit_kib: int, exclude: Iterable[Path] = ()) -> CodeBundle:
    """Pack the project folder; a UsageError (one line, what to do) when it is too big."""
    limit = limit_kib * 1024
    paths, left_out = _walk(root, {Path(p).resolve() for p in exclude}, file_limit_kib * 1024, 8 * limit + 2**20)
    archive = _tar(root, paths)
    if len(archive) > limit:
        biggest = sorted(paths, key=lambda p: p.stat().st_size, reverse=True)[:3]
        names = ", ".join(f"{p.relative_to(root).as_posix()} ({p.stat().st_size // 1024} KiB)" for p in biggest)
        raise UsageError(
            f"the project folder {root} is {len(archive) // 1024} KiB compressed, over "
            f"cluster.kubernetes.code_limit_kib ({limit_kib}); the largest files: {names}; list what the pods do "
            "not need in .tunecluster-ignore, put data on the volume (`tunecluster upload`), or bake the code "
            "into the image and set cluster.kubernetes.code: image")
    return CodeBundle(root, archive, [p.relative_to(root).as_posix() for p in paths], left_out)


# The init container's program: join the parts in order, check the digest, unpack safely.
UNPACK_SCRIPT = (
    "import glob,hashlib,io,os,sys,tarfile\n"
    "data=b''.join(open(p,'rb').read() for p in sorted(glob.glob('/parts/part-*')))\n"
    "if hashlib.sha256(data).hexdigest()!=os.environ['" + role_env.CODE_SHA256 + "']:\n"
    "    sys.exit('tunecluster: the project ConfigMaps do not match this run (re-apply with tunecluster up)')\n"
    "kw={'filter':'data'} if hasattr(tarfile,'data_filter') else {}\n"
    "tarfile.open(fileobj=io.BytesIO(data),mode='r:gz').extractall('" + CODE_MOUNT + "',**kw)\n"
)
