"""`up --script` without processes: the run's spec from the script's name, the script's tuner read
into the spec, the role commands every backend renders, the backends that refuse a script, and
`init --example pima-script`."""

from __future__ import annotations

from pathlib import Path

import keras_tuner as kt  # at collection: TensorFlow's import starts a process, which a unit test may not
import pytest

from tunecluster.cluster.plan import Placement, SecretFiles, build_plan
from tunecluster.core.errors import UsageError
from tunecluster.script.tuner_spec import experiment_name, script_experiment, tuner_section
from tunecluster.tuning.examples import write_template


def _placement() -> Placement:
    return Placement(spec_path="/in/spec.yaml", run_dir="/runs/x", chief_bind="0.0.0.0", chief_host="chief",
                     port=8000, secrets=SecretFiles("/s/token"))


def test_every_role_runs_the_script_with_its_arguments(tmp_path):
    script = tmp_path / "My Search.py"
    script.write_text("")
    spec = script_experiment(script, workers=3)
    assert spec.name == experiment_name(script) == "my-search"
    assert spec.hypermodel is None and spec.confirm.enabled is False and spec.cluster.workers == 3
    plan = build_plan(spec, _placement(), script=(str(script), "--", "data.csv"))
    assert [r.command for r in plan.roles] == [("script", str(script), "--", "data.csv")] * 4
    assert plan.chief.env["KERASTUNER_TUNER_ID"] == "chief"
    assert plan.workers[2].env["KERASTUNER_TUNER_ID"] == "tuner2"
    # without a script: the spec's roles
    assert [r.command for r in build_plan(spec, _placement()).roles] == [("chief",)] + [("worker",)] * 3


def test_a_script_that_is_no_python_file_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        script_experiment(tmp_path / "missing.py")
    notebook = tmp_path / "search.ipynb"
    notebook.write_text("{}")
    with pytest.raises(UsageError, match="not a Python file"):
        script_experiment(notebook)


def test_the_spec_takes_the_scripts_tuner_and_fit_arguments(tmp_path):

    (tmp_path / "s.py").write_text("")
    spec = script_experiment(tmp_path / "s.py")
    oracle = kt.oracles.HyperbandOracle(objective=kt.Objective("val_loss", "min"), max_epochs=9, factor=3,
                                        seed=5, max_consecutive_failed_trials=4)
    got = tuner_section(spec, oracle, {"epochs": 7, "batch_size": 64})
    assert (got.tuner.kind, got.tuner.objective, got.tuner.direction, got.tuner.seed) == ("hyperband", "val_loss", "min", 5)
    assert got.tuner.hyperband.max_epochs == 9 and got.tuner.max_consecutive_failed_trials == 4
    assert (got.fit.epochs, got.fit.batch_size) == (7, 64)
    random = tuner_section(spec, kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=6), {})
    assert (random.tuner.kind, random.tuner.max_trials, random.tuner.direction) == ("random", 6, "max")


def test_init_pima_script_writes_a_plain_keras_tuner_script(tmp_path):
    written = write_template(tmp_path, "pima-script")
    assert sorted(p.name for p in written) == ["diabetes.csv", "pima_search.py"]
    code = (tmp_path / "pima_search.py").read_text()
    assert "tunecluster" not in code.split('"""', 2)[2]  # the code itself knows nothing of tunecluster
    assert "kt.RandomSearch(" in code and "tuner.search(" in code and "max_trials=20" in code
    with pytest.raises(UsageError, match="already exist"):
        write_template(tmp_path, "pima-script")
    assert Path(tmp_path / "diabetes.csv").read_text().startswith("Pregnancies")


def _a_script(tmp_path) -> Path:
    script = tmp_path / "search.py"
    script.write_text("")
    return script


def test_a_spec_file_gives_a_script_run_its_cluster_settings_and_nothing_else(tmp_path):
    from tunecluster.script.tuner_spec import script_settings

    script = _a_script(tmp_path)
    settings = tmp_path / "cluster.yaml"
    settings.write_text("name: nightly\ncluster:\n  backend: kubernetes\n  workers: 3\n"
                        "  kubernetes:\n    worker: {cpu: 700m, memory: 1536Mi}\n")
    base, name = script_settings(settings)
    spec = script_experiment(script, None, base, name)
    assert (spec.name, spec.cluster.backend, spec.cluster.workers) == ("nightly", "kubernetes", 3)
    assert spec.cluster.kubernetes.worker.cpu == "700m" and spec.hypermodel is None
    assert script_experiment(script, 2, base).name == "search" and script_experiment(script, 2, base).cluster.workers == 2
    settings.write_text("cluster: {workers: 2}\ntuner: {max_trials: 3}\n")
    with pytest.raises(UsageError, match=r"tuner: does not go with --script .* keep only name: and cluster:"):
        script_settings(settings)
