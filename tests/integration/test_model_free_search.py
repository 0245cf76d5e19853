"""`run_trial` searches (no Keras model per trial): real chief and worker processes, real gRPC,
real scikit-learn."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from tunecluster.tuning.examples import csv_path


def _search(tmp_path: Path, code: str, workers: int = 2, **spec_changes) -> Path:
    (tmp_path / "trial.py").write_text(textwrap.dedent(code))
    spec = {"name": "run-trial", "run_trial": "trial.py:run_trial",
            "data": {"csv": str(csv_path()), "target": "Outcome"},
            "tuner": {"max_trials": 6, "seed": 3}, "fit": {"tensorboard": False},
            "confirm": {"enabled": False}, "cluster": {"workers": workers}}
    for section, values in spec_changes.items():
        if isinstance(values, dict):
            spec.setdefault(section, {}).update(values)
        else:
            spec[section] = values
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "spec.yaml"


SEEDED = """
    import sys
    import time

    def run_trial(hp, data, seed):
        time.sleep(0.3)  # long enough for both workers to get trials
        x = hp.Int("x", 0, 1000)
        kind = hp.Choice("kind", ["a", "b"])
        assert data.x_test is None  # the held-out rows never reach the search
        return [{"val_score": x / 1000.0, "seed": seed % 1000, "rows": len(data.y_val),
                 "keras": float("keras" in sys.modules and "tensorflow" in sys.modules)},
                {"val_score": x / 2000.0, "seed": seed % 1000, "rows": len(data.y_val), "keras": 0.0}]
"""


def test_a_model_free_search_runs_on_two_workers_without_tensorflow(tmp_path, cli):
    _search(tmp_path, SEEDED, tuner={"objective": "val_score", "max_trials": 8})
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    trials = sorted(document["trials"], key=lambda t: int(t["trial_id"]))
    assert len(trials) == 8 and all(t["status"] == "COMPLETED" for t in trials)
    assert {t["worker"] for t in trials} == {"tuner0", "tuner1"}
    # nothing declared the space: the first trial runs with the defaults, the rest sample it
    assert trials[0]["hyperparameters"] == {"x": 0, "kind": "a"}
    assert len({t["hyperparameters"]["x"] for t in trials[1:]}) > 3
    for t in trials:
        # the best of the two epochs scores (epoch 0: x/1000), each training got its own seed
        assert t["score"] == pytest.approx(t["hyperparameters"]["x"] / 1000.0, abs=1e-6)
        execution = t["executions"][0]
        assert execution["score_last_epoch"] == pytest.approx(t["hyperparameters"]["x"] / 2000.0, abs=1e-6)
        assert execution["saved_weights"] is False and execution["degenerate"] is None
    logs = "".join(p.read_text() for p in (tmp_path / "run" / "logs").glob("worker-*.log"))
    assert "(no TensorFlow)" in logs
    metrics = json.loads((tmp_path / "run" / "best" / "metrics.json").read_text())
    best = max(trials, key=lambda t: t["score"])
    assert metrics["trial_id"] == best["trial_id"] and metrics["model"] is None
    assert not (tmp_path / "run" / "best" / "model.keras").exists()
    assert json.loads((tmp_path / "run" / "best" / "hyperparameters.json").read_text()) == best["hyperparameters"]
    assert "best configuration:" in result.stdout
    pulled = cli("pull", "--dir", "run", "--to", "out", cwd=tmp_path, timeout=60)
    assert pulled.returncode == 0, pulled.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"hyperparameters.json", "metrics.json", "results.json"}


def test_a_declared_space_starts_every_worker_at_once(tmp_path, cli):
    _search(tmp_path, """
        import time

        def declare_hyperparameters(hp):
            return hp.Int("x", 0, 1000)

        def run_trial(hp):
            time.sleep(0.5)
            return declare_hyperparameters(hp) / 1000.0
    """, tuner={"max_trials": 4, "seed": 7})
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    from datetime import datetime

    trials = sorted(json.loads((tmp_path / "run" / "results.json").read_text())["trials"],
                    key=lambda t: int(t["trial_id"]))
    assert trials[0]["hyperparameters"]["x"] != 0  # drawn from the declared space, not the default
    first, second = (datetime.fromisoformat(t["started"]).timestamp() for t in trials[:2])
    assert trials[0]["worker"] != trials[1]["worker"] and abs(second - first) < 0.4  # side by side


def test_forest_example_confirms_on_held_out_rows(tmp_path, cli):
    """The embedded scikit-learn example, with a test split: the confirmation runs score on the
    validation rows and again (same seed) on the test rows; TensorBoard gets every trial."""
    result = cli("up", "--example", "pima-forest", "--max-trials", "5", "--holdout", "0.2",
                 "--confirm-top", "2", "--confirm-repeats", "2", "--dir", "run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run = tmp_path / "run"
    document = json.loads((run / "results.json").read_text())
    confirmed = [t for t in document["trials"] if t.get("confirmed")]
    assert len(confirmed) == 2
    for t in confirmed:
        assert t["confirmed"]["runs"] == 2 and 0.5 < t["confirmed"]["mean"] <= 1.0
        assert t["confirmed"]["test_mean"] is not None and 0.4 < t["confirmed"]["test_mean"] <= 1.0
    metrics = json.loads((run / "best" / "metrics.json").read_text())
    assert metrics["confirmed"]["runs"] == 2 and set(metrics["test"]) == {"accuracy"}
    assert metrics["rows"]["test"] > 0 and set(metrics["validation"]) == {"accuracy"}
    events = list((run / "tensorboard").rglob("events.out.tfevents.*"))
    sessions = {p.relative_to(run / "tensorboard").parts[0] for p in events}
    assert len(sessions) == 5 and any(p.parent.name == "validation" for p in events)


def test_one_worker_runs_are_reproducible(tmp_path, cli):
    code = """
        import random
        import numpy as np

        def run_trial(hp, data, seed):
            x = hp.Float("x", 0.0, 1.0)
            return {"val_accuracy": x * 0.5 + random.random() * 0.25 + float(np.random.rand()) * 0.25}
    """
    scores = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        _search(folder, code, workers=1)
        result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=folder, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        trials = json.loads((folder / "run" / "results.json").read_text())["trials"]
        scores.append(sorted((t["trial_id"], t["hyperparameters"]["x"], t["score"]) for t in trials))
    assert scores[0] == scores[1] and len(scores[0]) == 6


def test_a_function_that_registers_nothing_ends_the_search_after_one_trial(tmp_path, cli):
    _search(tmp_path, """
        def run_trial(hp):
            return 0.5
    """)
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    trials = json.loads((tmp_path / "run" / "results.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["COMPLETED"] and trials[0]["score"] == 0.5


@pytest.mark.parametrize("code, fragment", [
    ("def run_trial(hp):\n    hp.Int('x', 0, 3)\n    return None\n",
     "run_trial returned NoneType; return the objective's value (val_accuracy)"),
    ("def run_trial(hp):\n    hp.Int('x', 0, 3)\n    return {'loss': 0.3}\n",
     "run_trial returned loss without the objective 'val_accuracy'"),
    ("def run_trial(hp):\n    import keras\n    keras.layers.Dense(3)\n    return 0.5\n",
     "import keras (or tensorflow) at the top of that module"),
    ("import no_such_module_anywhere\ndef run_trial(hp):\n    return 0.5\n", "raised ModuleNotFoundError"),
], ids=["returns-none", "no-objective", "lazy-keras", "import-fails"])
def test_a_wrong_function_stops_with_one_line(tmp_path, cli, code, fragment):
    _search(tmp_path, code)
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout[-1500:], result.stderr[-1500:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_failing_function_fails_its_trials_with_the_message(tmp_path, cli):
    _search(tmp_path, """
        def run_trial(hp):
            x = hp.Int("x", 0, 100)
            if x % 2 == 0:
                raise ValueError(f"even x={x} is not allowed")
            return float(x)
    """, tuner={"max_trials": 8, "max_consecutive_failed_trials": 8, "seed": 5})
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    trials = json.loads((tmp_path / "run" / "results.json").read_text())["trials"]
    failed = [t for t in trials if t["status"] == "FAILED"]
    assert failed and all(t["hyperparameters"]["x"] % 2 == 0 for t in failed)
    assert all("is not allowed" in (t.get("message") or "") for t in failed), failed
    assert all(t["hyperparameters"]["x"] % 2 == 1 for t in trials if t["status"] == "COMPLETED")
    assert result.returncode in (0, 1), result.stderr[-2000:]


