"""The user's project folder as the pods get it when the code is not in the image: which folder
holds the hypermodel / run_trial / data loader (and their sibling modules and packages), the files
of it worth carrying (minus .gitignore / .tunecluster-ignore patterns, caches, virtual
environments, version control, run folders and data files over a size), packed as a reproducible
tar.gz that is cut into ConfigMap-sized parts. An init container joins the parts, checks the
archive's SHA-256 and unpacks it into `/code`, which is on the pods' PYTHONPATH.

Nothing is written: the size checks run before `up` writes its run folder. Which files travel is
`backends/project_files.py` (shared with compose's `up --script`).
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

from tunecluster.backends.project_files import inside, project_files
from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError

CODE_MOUNT = "/code"
PART_BYTES = 176 * 1024  # base64 of a part + the object < kubectl's 256 KiB last-applied annotation


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
    if inside(location, _installed_roots()):
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
    paths, left_out = project_files(
        root, exclude=exclude, file_limit=file_limit_kib * 1024, raw_limit=8 * limit + 2**20,
        remedy="put the model in a folder of its own (cluster.kubernetes.project_dir), list what it does not "
               "need in .tunecluster-ignore, or bake the code into the image and set cluster.kubernetes.code: image")
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
