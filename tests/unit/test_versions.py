"""The version gate: the keras-tuner / keras / tensorflow ranges pinned in pyproject.toml are the
ones kt_compat refuses to leave, and a release outside them is one line and exit code 2."""

from __future__ import annotations

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tunecluster import kt_compat
from tunecluster.core.errors import UsageError
from tunecluster.kt_compat import versions

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_pins_exactly_the_tested_ranges():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {Requirement(d).name: str(Requirement(d).specifier) for d in dependencies}
    for package, tested in versions.TESTED.items():
        assert Requirement(f"{package}{pinned[package]}").specifier == Requirement(f"{package}{tested}").specifier


def test_this_environment_is_a_tested_one():
    for role in kt_compat.ROLES:
        assert versions.untested(role) == []


def _lookup(found: dict):
    def lookup(name: str) -> str:
        if name not in found:
            raise metadata.PackageNotFoundError(name)
        return found[name]
    return lookup


def test_an_untested_release_is_refused_in_one_line():
    lookup = _lookup({"keras-tuner": "1.4.8", "keras": "3.16.0", "tensorflow": "2.21.0"})
    assert versions.check_versions("chief", environ={}, lookup=lookup) == []  # the chief needs no keras
    with pytest.raises(UsageError) as refused:
        versions.check_versions("worker", environ={}, lookup=lookup)
    message = str(refused.value)
    assert refused.value.exit_code == 2 and "\n" not in message
    assert "keras 3.16.0 (tested: keras<3.16,>=3.15)" in message
    assert "pip install" in message and "TUNECLUSTER_ALLOW_UNTESTED_VERSIONS=1" in message


def test_tensorflow_under_another_distribution_name_and_missing_packages():
    cpu = _lookup({"keras-tuner": "1.4.8", "keras": "3.15.1", "tensorflow-cpu": "2.21.0"})
    assert versions.untested("worker", cpu) == []
    missing = _lookup({"keras-tuner": "1.4.8", "keras": "3.15.1"})
    assert versions.untested("worker", missing) == ["tensorflow is not installed (tested: tensorflow<2.22,>=2.21)"]


def test_the_refusal_can_be_turned_into_a_warning(monkeypatch):
    warned = []
    monkeypatch.setattr(versions.log, "warning", lambda message, *args: warned.append(message % args))
    old = _lookup({"keras-tuner": "1.4.7"})
    found = versions.check_versions("chief", environ={versions.ALLOW_ENV: "1"}, lookup=old)
    assert found == ["keras-tuner 1.4.7 (tested: keras-tuner<1.4.9,>=1.4.8)"]
    assert len(warned) == 1 and "untested releases" in warned[0] and "keras-tuner 1.4.7" in warned[0]


def test_install_knows_its_roles():
    with pytest.raises(ValueError, match="unknown role"):
        kt_compat.install("gardener")
