"""`up --script` on a backend whose roles run in containers: the script's folder travels with it
(compose copies it into the run's input folder, Kubernetes packs it into the project ConfigMaps),
and its command line is rewritten for the containers.

Every role runs the script in its own folder (`tunecluster.script`), so an argument that names a
file is read relative to that folder, as on this machine:

- an absolute path into the carried folder becomes the same file relative to the script's folder;
- a relative path is kept (it is read from the script's folder there too);
- a path of this machine outside the carried folder (absolute, or relative with `..`) is refused
  with one line: the containers cannot read it (copy it into the folder, or give a path that
  exists in the containers: the image or the shared volume);
- anything else (numbers, names, paths that do not exist here) is passed unchanged.
`--name=VALUE` arguments are read the same way for their VALUE.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from tunecluster.core.errors import UsageError


@dataclass(frozen=True)
class ScriptInContainers:
    """The folder to carry and the command line (script path, then its arguments) in the containers."""

    root: Path
    command: tuple[str, ...]


def _mapped(value: str, script_dir: Path, root: Path) -> str:
    path = Path(value).expanduser()
    host = path if path.is_absolute() else script_dir / path
    if not value or not os.path.lexists(host):
        return value  # not a file here: a name, a number, or a path the containers have
    resolved = host.resolve()
    if resolved == root or root in resolved.parents:
        return os.path.relpath(resolved, script_dir.resolve()) if path.is_absolute() else value
    raise UsageError(f"script argument {value!r} names {resolved} on this machine, outside the folder carried to "
                     f"the containers ({root}); copy it into that folder and pass its relative path, or pass a "
                     "path that exists in the containers (the image or the shared volume)")


def map_argument(value: str, script_dir: Path, root: Path) -> str:
    """One argument as the containers should see it (see the module docstring)."""
    if value.startswith("-") and "=" in value:
        name, _, given = value.partition("=")
        return f"{name}={_mapped(given, script_dir, root)}" if given else value
    if value.startswith("-"):
        return value
    return _mapped(value, script_dir, root)


def script_in_containers(script: Sequence[str], folder: str, root: Optional[Path] = None) -> ScriptInContainers:
    """`script` (the host path of the script, then its arguments) for roles that find the carried
    folder (`root`, default: the script's own folder) at `folder`."""
    path = Path(script[0]).resolve()
    root = (root or path.parent).resolve()
    if root not in path.parents:
        raise UsageError(f"--script {path} is not inside the folder carried to the containers ({root}); "
                         "name a folder above the script (cluster.kubernetes.project_dir) or leave it unset")
    inner = path.relative_to(root).as_posix()
    arguments = tuple(map_argument(value, path.parent, root) for value in script[1:])
    return ScriptInContainers(root, (f"{folder.rstrip('/')}/{inner}", *arguments))
