"""Bad early-stopping input through the real CLI: an ASHA reduction factor below 2, min_epochs
above max_epochs, and median stopping on a run_trial function that reports one value per
training (nothing to compare epoch by epoch) each get one line on stderr and exit code 2."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from tunecluster.tuning.examples import csv_path


def _spec(tmp_path, **tuner):
    (tmp_path / "trial.py").write_text(textwrap.dedent("""
        def run_trial(hp):
            return hp.Float("x", 0.0, 1.0)
    """))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "name": "bad-stopping", "run_trial": "trial.py:run_trial",
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"max_trials": 3, **tuner}, "fit": {"tensorboard": False},
        "confirm": {"enabled": False}, "cluster": {"workers": 1}}))


@pytest.mark.parametrize("tuner, fragment", [
    ({"kind": "asha", "asha": {"reduction_factor": 1}},
     "tuner.asha.reduction_factor: Input should be greater than or equal to 2"),
    ({"kind": "asha", "asha": {"min_epochs": 9, "max_epochs": 3}}, "min_epochs (9) must not exceed max_epochs (3)"),
    ({"early_stopping": {"kind": "median"}}, "run_trial returned one value, but tuner.early_stopping"),
], ids=["eta-below-2", "min-above-max", "one-value-run-trial"])
def test_bad_stopping_input_is_one_line_and_exit_2(tmp_path, cli, tuner, fragment):
    _spec(tmp_path, **tuner)
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout[-1500:], result.stderr[-1500:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
