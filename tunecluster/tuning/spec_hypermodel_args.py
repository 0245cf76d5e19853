"""The spec's `hypermodel_args`: keyword arguments given to the hypermodel function besides `hp`
(and `data`), for values a search keeps fixed that its author wants to set from the spec, e.g.
`hypermodel_args: {optimizer: adam}` for `build(hp, data, optimizer="rmsprop")`.

`up --example pima-all --chain` writes them to carry an earlier phase's confirmed winner into the
next phase. Each value is a plain scalar (a string, number or boolean), so that it reads the same
in the spec file, in the run folder's spec.yaml and in the workers' environment.
"""

from __future__ import annotations

from typing import Union

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

HypermodelArg = Union[StrictBool, StrictInt, StrictFloat, StrictStr]
HypermodelArgs = dict[str, HypermodelArg]

HYPERMODEL_ARGS = Field(
    default_factory=dict,
    description="Keyword arguments for the hypermodel function besides hp (and data): name -> string, "
    "number or boolean; the function must accept each name.",
)


def check_accepts(func, args: dict, ref: str) -> None:
    """Raise ValueError naming the first argument `func` does not take (unless it takes **kwargs)."""
    import inspect

    params = inspect.signature(func).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for name in args:
        if name not in params or params[name].kind not in (params[name].POSITIONAL_OR_KEYWORD,
                                                          params[name].KEYWORD_ONLY):
            raise ValueError(f"hypermodel_args: {ref} takes no argument {name!r}; "
                             f"remove it from hypermodel_args or add it to the function")


def check_source_accepts(ref: str, args: dict) -> None:
    """Before anything starts, without importing the user's code: the function `ref` names,
    found in its source, takes every name of `args` (UsageError naming the first it does not).
    Says nothing when the source or the function is not found (the workers' import decides)."""
    import ast
    import importlib.util
    from pathlib import Path

    from tunecluster.core.errors import UsageError

    target, name = ref.rsplit(":", 1)
    try:
        path = Path(target) if target.endswith(".py") else Path(importlib.util.find_spec(target).origin or "")
        tree = ast.parse(path.read_text())
    except (AttributeError, ImportError, ValueError, OSError, SyntaxError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            if node.args.kwarg is not None:
                return
            names = {a.arg for a in node.args.args + node.args.kwonlyargs}
            for arg in args:
                if arg not in names:
                    raise UsageError(f"hypermodel_args: {ref} takes no argument {arg!r}; "
                                     "remove it from hypermodel_args or add it to the function")
            return
