"""Unpacking a tar archive that came from a container or a pod, safely.

Members are extracted with `tarfile`'s "data" filter where Python has it (3.10.12+, 3.11.4+):
no absolute paths, no `..`, no links out of the target, no device files. Older Pythons (allowed by
`requires-python`) have no filter argument and raise TypeError on it; there the members are
checked by hand before extraction. The archive is always closed.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import BinaryIO

from tunecluster.core.errors import RunFailure


def _checked_members(archive: tarfile.TarFile, target: Path) -> list[tarfile.TarInfo]:
    """For Pythons without extraction filters: refuse what the "data" filter would refuse."""
    root = os.path.realpath(target)
    members = []
    for member in archive.getmembers():
        path = os.path.realpath(os.path.join(root, member.name))
        if os.path.isabs(member.name) or not (path == root or path.startswith(root + os.sep)):
            raise RunFailure(f"refused to unpack {member.name!r}: it points outside {target}")
        if not (member.isfile() or member.isdir()):
            raise RunFailure(f"refused to unpack {member.name!r}: only files and folders are expected")
        members.append(member)
    return members


def extract_tar(source: BinaryIO, target: Path, mode: str = "r:*") -> list[str]:
    """Unpack the tar stream `source` into `target`; return the names of the files in it."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=source, mode=mode) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(target, filter="data")
            members = archive.getmembers()
        else:
            members = _checked_members(archive, target)
            archive.extractall(target, members=members)
    return sorted(m.name for m in members if m.isfile())
