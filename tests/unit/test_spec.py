"""Spec validation: every field has a default; bad keys, types and values give one line naming
the field and what is allowed; relative paths resolve against the spec file; the examples."""

from __future__ import annotations

import pytest
import yaml

from tunecluster.core.errors import UsageError
from tunecluster.tuning.examples import PHASES, example_spec
from tunecluster.tuning.spec import Experiment, load_spec, validate_spec


def test_every_field_has_a_default():
    spec = Experiment()
    assert spec.tuner.kind == "random" and spec.cluster.workers >= 1 and spec.fit.epochs >= 1


@pytest.mark.parametrize("raw, expected", [
    ({"tuner": {"kind": "evolution"}}, "tuner.kind: Input should be 'random', 'grid', 'bayesian', 'hyperband' or 'asha'"),
    ({"tuner": {"max_trials": 0}}, "tuner.max_trials: Input should be greater than or equal to 1"),
    ({"tuner": {"max_trails": 5}}, "tuner.max_trails: unknown key; allowed keys here:"),
    ({"fit": {"epochs": "ten"}}, "fit.epochs: Input should be a valid integer"),
    ({"cluster": {"backend": "slurm"}}, "cluster.backend: Input should be 'local', 'compose' or 'kubernetes'"),
    ({"data": {"validation_fraction": 1.5}}, "data.validation_fraction: Input should be less than 1"),
    ({"name": "My Experiment"}, "name: use 1-40 lowercase letters"),
    ({"hypermodel": "no_colon"}, 'hypermodel: write it as "module:function"'),
    ({"colour": "blue"}, "colour: unknown key; allowed keys here: cluster, confirm, data, final, fit, hypermodel, hypermodel_args, name, run_trial, stages, tuner"),
    ({"data": {"csv": "a.csv", "loader": "m:f"}}, "give either data.csv or data.loader"),
])
def test_bad_values_name_the_field(raw, expected):
    with pytest.raises(UsageError) as info:
        validate_spec(raw, "tunecluster.yaml")
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(UsageError) as info:
        validate_spec({"tuner": {"max_trails": 5}})
    assert "max_trials" in str(info.value) and "objective" in str(info.value)


def test_relative_paths_resolve_against_the_spec_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "tunecluster.yaml"
    path.write_text(yaml.safe_dump({"hypermodel": "model.py:build", "data": {"csv": "data.csv"}}))
    spec = load_spec(path)
    assert spec.data.csv == str(tmp_path / "sub" / "data.csv")
    assert spec.hypermodel == f"{tmp_path / 'sub' / 'model.py'}:build"


def test_garbled_yaml_is_one_line(tmp_path):
    path = tmp_path / "tunecluster.yaml"
    path.write_text("tuner: [unclosed\n  kind: random\n")
    with pytest.raises(UsageError) as info:
        load_spec(path)
    assert "not valid YAML at line" in str(info.value) and "\n" not in str(info.value)


def test_examples_are_the_four_tutorial_phases_and_its_baseline():
    assert set(PHASES) == {"pima-optimizer", "pima-units", "pima-layers", "pima-comprehensive", "pima-baseline",
                           "pima-conditional"}
    spec = example_spec("pima")
    assert spec.name == "pima-comprehensive"
    assert spec.data.validation_fraction == 0.2 and spec.data.split_seed == 42 and spec.data.test_fraction == 0
    assert spec.tuner.objective == "val_accuracy"


