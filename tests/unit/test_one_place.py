"""Things decided in exactly one place (the review that led to the restructure found each of
these repeated per backend): environment variable names, tokens and certificates, the oracle
lock, the end-of-run verdict, the SIGINT handler."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tunecluster"
VARIABLE = re.compile(r"(KERASTUNER|TUNECLUSTER)_[A-Z_]+")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path.read_text()


def test_environment_variable_names_come_from_core_env():
    found = []
    for name, text in _modules():
        if name == "core/env.py":
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.fullmatch(node.value):
                found.append(f"{name}:{node.lineno} {node.value}")
    assert found == []


def _calls(pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return sorted({name for name, text in _modules() if regex.search(text)})


def test_tokens_and_certificates_are_made_in_run_secrets():
    assert _calls(r"token_urlsafe|token_hex|CertificateBuilder") == ["cluster/run_secrets.py"]


def test_the_oracle_lock_is_taken_in_kt_compat_only():
    assert _calls(r"\bLOCKS\[|\bTHREADS\[") == ["kt_compat/oracle_lock.py"]


def test_one_verdict_and_one_follower():
    assert _calls(r"the search stopped: ") == ["backends/verdict.py"]
    assert _calls(r"\.follow\(\w*\.alive\)|view\(session\.alive\)") == ["backends/base.py"]


def test_sigint_is_set_by_the_commands_that_run_until_interrupted():
    assert _calls(r"signal\.signal\(signal\.SIGINT") == ["cli/inspect_commands.py", "cli/run_commands.py"]
