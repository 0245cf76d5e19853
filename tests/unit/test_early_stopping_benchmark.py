"""`benchmarks/early_stopping.py` and its generated task: the specs and the stock script it writes
use the chosen task's data, and the generated task's rows are the same on every call."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def modules(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    for name in ("early_stopping", "generated_task"):
        sys.modules.pop(name, None)
    import early_stopping
    import generated_task
    monkeypatch.setattr(generated_task, "ROWS", 600)
    return early_stopping, generated_task


def test_generated_task_rows_are_a_function_of_the_seed(tmp_path, modules):
    _, task = modules
    first = pd.read_csv(task.write_csv(tmp_path / "a.csv"))
    again = pd.read_csv(task.write_csv(tmp_path / "b.csv"))
    other = pd.read_csv(task.write_csv(tmp_path / "c.csv", seed=1))
    assert list(first.columns) == [f"f{i:02d}" for i in range(40)] + ["label"]
    assert len(first) == 600 and set(first["label"]) == {0, 1}
    assert first.equals(again) and not first.equals(other)
    # written once: an existing file is kept as it is
    (tmp_path / "a.csv").write_text("kept")
    assert task.write_csv(tmp_path / "a.csv").read_text() == "kept"


def test_the_specs_and_the_stock_script_read_the_chosen_task(tmp_path, modules):
    bench, _ = modules
    data = bench.data_for("generated", tmp_path)
    assert data["csv"] == str(tmp_path / "generated.csv") and data["target"] == "label"
    assert (tmp_path / "generated.csv").exists()
    spec = bench.spec_for("asha", 1, 27, 81, 2, (3, 3), budget=300, model="generated", data=data)
    assert spec["data"] == data
    assert spec["tuner"]["kind"] == "asha" and spec["tuner"]["max_time"] == 300
    pima = bench.spec_for("random", 1, 27, 81, 2, (3, 3))
    assert pima["data"]["csv"].endswith("diabetes.csv") and pima["data"]["test_fraction"] == 0.2
    script = bench.STOCK_ROLE % {"repo": "/repo", "max_epochs": 81, "seed": 1, "iterations": 1,
                                 "build_import": bench.BUILDS["generated"], "data": json.dumps(data)}
    compile(script, "stock_role.py", "exec")
    assert json.dumps(data) in script


def test_confirm_setting_reads_top_and_repeats(modules):
    bench, _ = modules
    assert bench.confirm_setting("3,1") == (3, 1)
    for bad in ("3", "a,b", "0,3", "3,1,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.confirm_setting(bad)


def test_merge_refuses_runs_of_another_confirmation_setting(tmp_path, modules):
    bench, _ = modules
    run = {"seed": 1, "trials": 2}
    common = {"model": "generated", "workers": 2, "max_epochs": 27, "budget_s": 300, "configs": None,
              "quick": False}
    (tmp_path / "old.json").write_text(json.dumps({**common, "runs": {"asha": [run]}}))  # before --confirm: 3,3
    (tmp_path / "b.json").write_text(json.dumps({**common, "confirm": [3, 1], "runs": {"asha": [{**run, "seed": 3}]}}))
    with pytest.raises(SystemExit, match="confirm differ"):
        bench.merge([tmp_path / "old.json", tmp_path / "b.json"], tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_merge_joins_parts_and_says_which_seeds_each_method_has(tmp_path, modules, monkeypatch):
    bench, _ = modules
    monkeypatch.setattr(bench, "table", lambda *args: None)
    common = {"model": "generated", "workers": 2, "max_epochs": 27, "budget_s": 480, "configs": None,
              "quick": False, "confirm": [3, 1]}

    def run(seed, epochs):
        return {"seed": seed, "wall_s": 1.0, "trials": 2, "epochs_trained": epochs, "utilisation": 1.0,
                "utilisation_in_budget": 1.0, "time_to_best_s": 1.0, "search_best": 0.9,
                "confirmed_validation": 0.9, "confirmed_test": 0.9}

    (tmp_path / "a.json").write_text(json.dumps({**common, "runs": {"asha": [run(1, 10)], "stock": [run(1, 4)]}}))
    # a part stopped early: stock's seed 2 is missing, and a seed already joined is not counted twice
    (tmp_path / "b.json").write_text(json.dumps({**common, "runs": {"asha": [run(2, 20), run(1, 99)], "stock": []}}))
    bench.merge([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "out.json")
    merged = json.loads((tmp_path / "out.json").read_text())
    assert merged["seeds"] == [1, 2]
    assert merged["seeds_per_method"] == {"asha": [1, 2], "stock": [1]}
    assert merged["summary"]["asha"]["epochs_trained"]["mean"] == 15


def test_budget_for_reads_a_known_method_and_positive_seconds(modules):
    bench, _ = modules
    assert bench.budget_override("asha=160") == ("asha", 160.0)
    for bad in ("asha", "asha=", "asha=-1", "asha=x", "tpe=10"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.budget_override(bad)


def test_against_random_pairs_the_seeds_both_methods_ran(modules):
    bench, _ = modules

    def run(seed, epochs, test):
        return {"seed": seed, "epochs_trained": epochs, "confirmed_test": test}

    results = {"random": [run(1, 300, 0.90), run(2, 100, 0.80)],
               "asha": [run(1, 50, 0.92), run(2, 50, 0.78), run(3, 50, 0.99)],  # seed 3: random has none
               "stock": [run(1, 40, None)]}
    beside = bench.against_random(results)
    assert set(beside) == {"asha", "stock"}
    assert beside["asha"]["epochs_share"] == pytest.approx(50 / 200)
    assert beside["asha"]["paired_seeds"] == 2
    assert beside["asha"]["test_difference"] == pytest.approx(0.0)  # +0.02 and -0.02
    assert beside["asha"]["test_difference_se"] == pytest.approx(0.02)  # stdev 0.0283 / sqrt 2
    assert beside["stock"]["test_difference"] is None and beside["stock"]["paired_seeds"] == 0
    assert bench.against_random({"asha": [run(1, 50, 0.9)]}) == {}
