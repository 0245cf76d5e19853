"""The version gate: the keras-tuner, keras and tensorflow releases tunecluster was tested with.

Everything in `kt_compat` reaches into private code of these three packages, which any release
may change without notice. `check_versions(role)` runs at each role's start-up (`install`) and
refuses, with one line and exit code 2, a release outside the ranges below: the ranges the test
suite ran with, also pinned in pyproject.toml (a unit test keeps the two equal).
`TUNECLUSTER_ALLOW_UNTESTED_VERSIONS=1` turns the refusal into a warning, for someone who wants
to try a newer release at their own risk.

Reads the installed distributions' metadata only: nothing is imported.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from typing import Callable, Mapping, Optional

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError

log = logging.getLogger("tunecluster")

TESTED = {
    "keras-tuner": ">=1.4.8,<1.4.9",
    "keras": ">=3.15,<3.16",
    "tensorflow": ">=2.21,<2.22",
}
ALLOW_ENV = role_env.ALLOW_UNTESTED
# what each role imports: the chief and a model-free worker run Keras Tuner on the stand-in keras
NEEDED = {
    "chief": ("keras-tuner",),
    "model_free_worker": ("keras-tuner",),
    "worker": ("keras-tuner", "keras", "tensorflow"),
}
# TensorFlow is published under several distribution names (the same `tensorflow` package)
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel")


def installed_version(package: str, lookup: Callable[[str], str] = metadata.version) -> Optional[str]:
    """The installed release of `package` (for tensorflow: of whichever distribution provides it)."""
    for name in TENSORFLOW_DISTRIBUTIONS if package == "tensorflow" else (package,):
        try:
            return lookup(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def untested(role: str, lookup: Callable[[str], str] = metadata.version) -> list[str]:
    """One phrase per package `role` needs whose installed release is not in its tested range."""
    problems = []
    for package in NEEDED[role]:
        found = installed_version(package, lookup)
        wanted = SpecifierSet(TESTED[package])
        if found is None:
            problems.append(f"{package} is not installed (tested: {package}{wanted})")
            continue
        try:
            ok = Version(found) in wanted
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{package} {found} (tested: {package}{wanted})")
    return problems


def check_versions(role: str, environ: Mapping[str, str] = os.environ,
                   lookup: Callable[[str], str] = metadata.version) -> list[str]:
    """Refuse untested releases for `role` (see the module docstring); returns what was found
    untested when `TUNECLUSTER_ALLOW_UNTESTED_VERSIONS=1` lets the role run anyway."""
    problems = untested(role, lookup)
    if not problems:
        return []
    if (environ.get(ALLOW_ENV) or "").strip().lower() in ("1", "true", "yes", "on"):
        log.warning("running with untested releases (%s=1): %s", ALLOW_ENV, "; ".join(problems))
        return problems
    install = " ".join(f"'{p}{SpecifierSet(TESTED[p])}'" for p in NEEDED[role])
    raise UsageError(f"the {role.replace('_', ' ')} needs the releases tunecluster was tested with: "
                     f"{'; '.join(problems)}; install them (pip install {install}) or set {ALLOW_ENV}=1 "
                     "to run anyway")
