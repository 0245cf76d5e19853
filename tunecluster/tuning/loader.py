"""Import a user's callable from `"module:function"` or `"path/to/file.py:function"`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

from tunecluster.core.errors import UsageError


def load_callable(ref: str, what: str = "hypermodel") -> Callable:
    """Return the function named by `ref`; a UsageError says what to fix when it cannot."""
    if ":" not in ref:
        raise UsageError(f'{what} {ref!r}: write it as "module:function" or "file.py:function"')
    target, name = ref.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"{what} {ref!r}: file {path} not found")
        module_name = f"_tunecluster_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: report it in one line
            raise UsageError(
                f"{what} {ref!r}: importing {path} raised {type(exc).__name__}: {exc}"
            ) from exc
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise UsageError(
                f"{what} {ref!r}: cannot import module {target!r} ({type(exc).__name__}: {exc}); "
                "check the name or use a file path"
            ) from exc
    func = getattr(module, name, None)
    if func is None or not callable(func):
        raise UsageError(f"{what} {ref!r}: {target} has no function {name!r}")
    return func


def check_callable_ref(ref: str, what: str = "hypermodel") -> None:
    """A quick check before anything starts, without importing the user's code (it may import
    TensorFlow): the file exists, parses and defines `function`. Import errors inside the module
    are reported by the workers, which import it for real."""
    import ast

    if ":" not in ref:
        raise UsageError(f'{what} {ref!r}: write it as "module:function" or "file.py:function"')
    target, name = ref.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
    else:
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError) as exc:
            raise UsageError(f"{what} {ref!r}: cannot find module {target!r} ({exc}); "
                             "check the name or use a file path") from None
        if found is None:
            raise UsageError(f"{what} {ref!r}: no module named {target!r}; check the name or use a file path")
        if not found.origin or not found.origin.endswith(".py"):
            return  # a compiled or namespace module: the workers' import decides
        path = Path(found.origin)
    if not path.is_file():
        raise UsageError(f"{what} {ref!r}: file {path} not found")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        raise UsageError(f"{what} {ref!r}: {path} line {exc.lineno}: syntax error ({exc.msg})") from None
    defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    defined |= {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    if name not in defined:
        raise UsageError(f"{what} {ref!r}: {path.name} defines no function {name!r}")
