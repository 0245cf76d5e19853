"""`tunecluster render --backend kubernetes` from the command line: the oracle token stays out of
the output unless asked for."""

from __future__ import annotations

import yaml

from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.spec import validate_spec


def _spec(**cluster):
    raw = example_spec("pima-units").model_dump(mode="json")
    raw["cluster"].update(workers=3, **cluster)
    return validate_spec(raw, "test")


def test_render_cli_keeps_the_token_out_unless_asked(cli, tmp_path):
    plain = cli("render", "--example", "pima-optimizer", "--workers", "2", "-n", "team", cwd=tmp_path, timeout=60)
    assert plain.returncode == 0, plain.stderr
    docs = [d for d in yaml.safe_load_all(plain.stdout) if d]
    assert "Secret" not in {d["kind"] for d in docs} and "create secret generic" in plain.stdout
    assert all(d["metadata"]["namespace"] == "team" for d in docs)
    with_secret = cli("render", "--example", "pima-optimizer", "--include-secret", cwd=tmp_path, timeout=60)
    secret = next(d for d in yaml.safe_load_all(with_secret.stdout) if d and d["kind"] == "Secret")
    assert len(secret["stringData"]["token"]) >= 32
    role = cli("render", "--rbac", "-n", "team", "--user", "alice", cwd=tmp_path, timeout=60)
    kinds = [d["kind"] for d in yaml.safe_load_all(role.stdout) if d]
    assert kinds == ["Role", "RoleBinding"]


