"""What a compose run's containers read from the host: `<run>/input`, mounted read-only at
/tunecluster/input: the spec with paths rewritten for the containers, the CSV under data/, and the
user's model or loader file (or the top-level module or package a "module:function" names, unless
it is tunecluster's own) under code/ (on the containers' PYTHONPATH). For `up --script`, code/
holds the script's folder (`backends/project_files.py` says which files; the script runs there,
read-only: `backends/script_carry.py` maps its arguments)."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tunecluster.backends.compose.render import INPUT, INPUT_DIR
from tunecluster.backends.project_files import project_files
from tunecluster.backends.script_carry import ScriptInContainers, script_in_containers
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, write_atomic
from tunecluster.tuning.spec import Experiment, code_refs, dump_spec


@dataclass(frozen=True)
class Inputs:
    """The spec as the containers read it, and the host files to copy into `<run>/input`."""

    spec: Experiment  # paths relative to INPUT
    files: tuple[tuple[Path, str], ...]  # (host source, path relative to <run>/input)


def _module_source(module: str, what: str) -> Optional[Path]:
    """The host file or package folder of a top-level module the image does not have."""
    top = module.split(".", 1)[0]
    if top == "tunecluster":
        return None
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin:
        raise UsageError(f"{what} module {top!r} is not importable here, so it cannot be copied into "
                         "the containers; use a file path (\"model.py:function\")")
    origin = Path(found.origin)
    return origin.parent if found.submodule_search_locations else origin


def stage_inputs(spec: Experiment) -> Inputs:
    """Decide what goes into `<run>/input`: the CSV under data/, a model or loader file (or the
    top-level module or package a "module:function" names, unless it is tunecluster's own)."""
    spec = spec.model_copy(deep=True)
    files: list[tuple[Path, str]] = []
    taken: set[str] = set()

    def add(source: Path, rel: str) -> str:
        if rel in taken:
            return rel
        taken.add(rel)
        files.append((source, rel))
        return rel

    if spec.data.csv:
        source = Path(spec.data.csv)
        if not source.is_file():
            raise UsageError(f"data.csv {source} not found")
        spec.data.csv = add(source, f"data/{source.name}")
    for section, attr, what in code_refs(spec):
        ref = getattr(section, attr)
        if not ref:
            continue
        target, func = ref.rsplit(":", 1)
        if target.endswith(".py"):
            source = Path(target)
            if not source.is_file():
                raise UsageError(f"{what} file {source} not found")
            setattr(section, attr, f"{add(source, 'code/' + source.name)}:{func}")
        else:
            source = _module_source(target, what)
            if source is not None:
                add(source, f"code/{source.name}")
    return Inputs(spec, tuple(files))


SCRIPT_FOLDER_LIMIT = 2 * 2**30  # bytes of a script's folder copied into <run>/input/code


def stage_script(script: tuple[str, ...]) -> tuple[ScriptInContainers, list[Path]]:
    """`up --script`: the script's command line in the containers and the files of its folder to
    copy (a UsageError, one line, for an argument the containers cannot read or a folder too big)."""
    carried = script_in_containers(script, str(INPUT / "code"))
    files, _ = project_files(carried.root, file_limit=SCRIPT_FOLDER_LIMIT, raw_limit=SCRIPT_FOLDER_LIMIT,
                             remedy="put the script in a folder of its own, or list what the containers do not "
                                    "need in .tunecluster-ignore")
    return carried, files


def write_inputs(run: RunDir, spec: Experiment, script: tuple[str, ...] = ()) -> None:
    """`<run>/input`: the container spec and copies of the files it names (with `script`, the
    script's folder under code/), world-readable."""
    inputs = stage_inputs(spec)
    folder = run.root / INPUT_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for source, rel in inputs.files:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(source, target)
    (folder / "code").mkdir(exist_ok=True)
    if script:
        carried, files = stage_script(script)
        for source in files:
            target = folder / "code" / source.relative_to(carried.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    write_atomic(folder / "spec.yaml", dump_spec(inputs.spec))
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
