"""The package layers hold (docs/architecture.md): the import-linter contracts in pyproject.toml
pass on the code, and fail when a change breaks them (an upward import, one backend importing
another, a cycle between sibling modules). Also: the CLI compares no backend name, and Keras
Tuner's private package is reached only from kt_compat."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "tunecluster"


def _lint(config: Path) -> int:
    return lint_imports(config_filename=str(config), no_cache=True, no_logo=True)


def test_the_contracts_hold(monkeypatch):
    monkeypatch.chdir(REPO)
    assert _lint(REPO / "pyproject.toml") == 0


def _copy_as(tmp_path: Path, name: str) -> Path:
    """The package and its contracts under another name (so the copy is analysed, not the
    installed package): every `tunecluster.` becomes `<name>.`."""
    target = tmp_path / name
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    for path in target.rglob("*.py"):
        path.write_text(path.read_text().replace("tunecluster.", f"{name}.").replace(
            "from tunecluster import", f"from {name} import"))
    config = (REPO / "pyproject.toml").read_text()
    config = config[config.index("[tool.importlinter]"):]
    (tmp_path / "contracts.toml").write_text(re.sub(r"\btunecluster\b", name, config))
    return target


@pytest.mark.parametrize("where, line, broken", [
    ("core/errors.py", "import {name}.cli", "layers"),  # the bottom layer imports the top
    ("tuning/spec.py", "import {name}.cluster.plan", "layers"),  # what is searched imports the runtime
    ("backends/local/backend.py", "import {name}.backends.compose.render", "no backend imports another"),
    ("cluster/leases.py", "import {name}.cluster.work", "cycles"),  # with work.py importing leases.py:
    ("ui/live.py", "import {name}.report", "layers"),  # ui and report are independent siblings
])
def test_a_broken_rule_fails_the_contracts(tmp_path, monkeypatch, capsys, where, line, broken):
    name = "tc_copy"
    copy = _copy_as(tmp_path, name)
    if broken == "cycles":  # make a cycle: leases imports work, work imports leases
        work = copy / "cluster" / "work.py"
        work.write_text(work.read_text() + f"\nimport {name}.cluster.leases  # noqa\n")
    module = copy / where
    module.write_text(module.read_text() + "\n" + line.format(name=name) + "  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]
    assert _lint(tmp_path / "contracts.toml") == 1
    assert "BROKEN" in capsys.readouterr().out


def test_an_unbroken_copy_passes(tmp_path, monkeypatch):
    """(the check above fails because of the added line, not because of the copy)"""
    _copy_as(tmp_path, "tc_clean")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert _lint(tmp_path / "contracts.toml") == 0


def test_the_cli_compares_no_backend_name():
    pattern = re.compile(r'== *"(local|compose|kubernetes)"|== *BackendName')
    found = [f"{path.name}:{n}" for path in (PACKAGE / "cli").rglob("*.py")
             for n, text in enumerate(path.read_text().splitlines(), 1) if pattern.search(text)]
    assert found == []


def test_keras_tuner_private_code_is_reached_only_from_kt_compat():
    found = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
             if "keras_tuner.src" in path.read_text() and "kt_compat" not in path.parts]
    assert found == []
    private = re.compile(r"\b(keras\.src|tensorflow\.python)\b")
    found = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
             if private.search(path.read_text()) and "kt_compat" not in path.parts]
    assert found == []


def test_no_module_is_long_without_a_reason():
    """Modules over ~400 lines say in their docstring why they are one module."""
    long = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if len(p.read_text().splitlines()) > 400 and "one module because" not in p.read_text()[:3000]]
    assert long == []
