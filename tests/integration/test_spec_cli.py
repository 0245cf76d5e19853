"""A bad spec from the command line: one line naming the field, exit code 2; a missing spec file;
`tunecluster init` writes an editable example and never overwrites one."""

from __future__ import annotations

import pytest

from tunecluster.tuning.spec import load_spec


@pytest.mark.parametrize("content, expected", [
    ("tuner:\n  kind: evolution\n", "tuner.kind"),
    ("fit: {epochs: -1}\n", "fit.epochs"),
    ("- just\n- a list\n", "the top level must be a mapping"),
])
def test_cli_rejects_bad_spec_with_exit_code_2(cli, tmp_path, content, expected):
    (tmp_path / "tunecluster.yaml").write_text(content)
    result = cli("up", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "tunecluster-runs").exists()


def test_cli_missing_spec_file(cli, tmp_path):
    result = cli("up", "-f", "nope.yaml", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "spec file nope.yaml not found" in result.stderr and "Traceback" not in result.stderr


def test_init_writes_an_editable_example_and_never_overwrites(cli, tmp_path):
    result = cli("init", "--example", "pima", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    spec = load_spec(tmp_path / "tunecluster.yaml")
    assert spec.hypermodel.endswith("model.py:build_comprehensive")
    assert spec.data.test_fraction == 0.2 and spec.data.validation_fraction == 0.2  # 60/20/20
    assert (tmp_path / "diabetes.csv").read_text().startswith("Pregnancies,Glucose")
    (tmp_path / "model.py").write_text("# my edits\n")
    again = cli("init", cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "already exist" in again.stderr
    assert (tmp_path / "model.py").read_text() == "# my edits\n"
