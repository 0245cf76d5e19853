"""`benchmarks/epoch_cost.py`: the per-training overhead and per-epoch cost solved from a promoted
training and its parent, the epochs after the budget, and the split of one method's epochs over
another's into factors whose product is the ratio, on constructed results documents whose costs
are known."""

from __future__ import annotations

import gzip
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
T0 = 1_780_000_000.0


@pytest.fixture
def epoch_cost(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("epoch_cost", None)
    import epoch_cost
    return epoch_cost


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, tz=timezone.utc).isoformat()


def trial(trial_id, start, end, epochs, fit_s, units=(32,), parent=None, promoted_from=None):
    hps = {"num_layers": len(units), **{f"units_{i}": u for i, u in enumerate(units)}}
    if parent:
        hps["tuner/trial_id"] = parent
    curve = [{"val_accuracy": 0.5}] * (epochs + (promoted_from or 0))
    return {"trial_id": trial_id, "started": iso(start), "ended": iso(end), "all_hyperparameters": hps,
            "executions": [{"curve": curve, "promoted_from": promoted_from,
                            "timing": {"fit_s": fit_s, "build_s": 0.1}}]}


def test_overhead_and_epoch_cost_are_solved_from_a_promoted_training_and_its_parent(epoch_cost):
    # overhead 0.5 s, 2 s per epoch: 1 epoch = 2.5 s, 2 more epochs = 4.5 s
    rows = epoch_cost.trainings({"trials": [trial("a", 0, 3, 1, 2.5), trial("b", 3, 8, 2, 4.5, parent="a",
                                                                             promoted_from=1)]})
    assert [r["epochs"] for r in rows] == [1, 2]  # the promoted training counts the epochs it added
    [pair] = epoch_cost.overhead_pairs(rows)
    assert pair["per_epoch_s"] == pytest.approx(2.0) and pair["overhead_s"] == pytest.approx(0.5)


def test_unfinished_trainings_are_left_out(epoch_cost):
    running = trial("r", 0, 5, 1, 1.0)
    running["ended"] = None
    no_timing = trial("n", 0, 5, 1, 1.0)
    no_timing["executions"][0]["timing"] = None
    assert epoch_cost.trainings({"trials": [running, no_timing, trial("d", 0, 5, 1, 1.0)]})[0]["trial"] == "d"


def test_epochs_after_the_budget_are_spread_over_the_training(epoch_cost):
    # budget 10 s: a 10-epoch training from 5 s to 15 s has half its epochs after it
    rows = epoch_cost.trainings({"trials": [trial("a", 0, 5, 5, 5.0), trial("b", 5, 15, 10, 10.0)]})
    figures = epoch_cost.method_figures(rows, budget=10, overhead=0.0, features=40)
    assert figures["epochs"] == 15 and figures["epochs_after_budget"] == pytest.approx(5.0)


def test_model_size_counts_the_dense_weights(epoch_cost):
    assert epoch_cost.dense_size({"num_layers": 2, "units_0": 32, "units_1": 64}, 40) == (2, 41 * 32 + 33 * 64 + 65)


def test_the_factors_multiply_to_the_epochs_ratio(epoch_cost):
    # A: 2 long trainings of a cheap model; B: 6 short trainings of a dearer model, same overhead
    a = epoch_cost.trainings({"trials": [trial("a1", 0, 20, 10, 10.5), trial("a2", 0, 20, 10, 10.5)]})
    b = epoch_cost.trainings({"trials": [trial(f"b{i}", 0, 7, 2, 3.5, units=(256, 256)) for i in range(6)]})
    fa = epoch_cost.method_figures(a, budget=100, overhead=0.5, features=40)
    fb = epoch_cost.method_figures(b, budget=100, overhead=0.5, features=40)
    assert fa["epoch_cost_s"] == pytest.approx(1.0) and fb["epoch_cost_s"] == pytest.approx(1.5)
    split = epoch_cost.compare(fa, fb)
    assert split["epochs_ratio"] == pytest.approx(12 / 20)
    product = split["fit_seconds_factor"] * split["overhead_factor"] * split["epoch_cost_factor"]
    assert product == pytest.approx(split["epochs_ratio"], abs=0.005)
    assert fb["mean_layers"] == 2 and fb["mean_weights"] > fa["mean_weights"]


def test_runs_without_pairs_are_refused_in_one_line(epoch_cost, tmp_path, monkeypatch, capsys):
    path = tmp_path / "random.json"
    path.write_text(json.dumps({"trials": [trial("a", 0, 20, 10, 10.5)]}))
    monkeypatch.setattr(sys, "argv", ["epoch_cost.py", "--budget", "10", f"random={path}"])
    with pytest.raises(SystemExit, match="no promoted training"):
        epoch_cost.main()


def test_to_match_counts_the_epochs_trained_until_a_training_first_scores_as_well(epoch_cost):
    def scored(trial_id, start, end, epochs, score):
        row = trial(trial_id, start, end, epochs, float(end - start))
        row["score"] = score
        return row

    rows = epoch_cost.trainings({"direction": "max", "trials": [
        scored("a", 0, 10, 10, 0.7), scored("b", 0, 20, 4, 0.9), scored("c", 10, 30, 10, 0.95)]})
    # b (0.9) ends at 20 s: a in full (10), b in full (4), c half way (5)
    assert epoch_cost.to_match(rows, 0.85) == {"seconds": 20.0, "epochs": 19.0}
    assert epoch_cost.to_match(rows, 0.99) is None


def test_the_command_writes_each_methods_figures_and_the_comparison(epoch_cost, tmp_path, monkeypatch):
    def document(trials):
        for t in trials:
            t["score"] = 0.9 if t["trial_id"] in ("r1", "p2") else 0.6
        return json.dumps({"direction": "max", "trials": trials})

    (tmp_path / "random.json").write_text(document([trial("r1", 0, 21, 20, 20.5)]))
    (tmp_path / "asha.json.gz").write_bytes(gzip.compress(document([  # a kept run's file, gzipped
        trial("p1", 0, 2, 1, 1.5), trial("p2", 2, 5, 2, 2.5, parent="p1", promoted_from=1)]).encode()))
    out = tmp_path / "out.json"
    monkeypatch.setattr(epoch_cost, "machine", dict)  # platform.platform() may start a process
    monkeypatch.setattr(sys, "argv", ["epoch_cost.py", "--budget", "100", "--compare", "random,asha", "--out", str(out),
                                      f"random={tmp_path / 'random.json'}", f"asha={tmp_path / 'asha.json.gz'}"])
    epoch_cost.main()
    figures = json.loads(out.read_text())
    assert figures["overhead_s"]["median"] == pytest.approx(0.5)
    assert figures["methods"]["asha"]["epochs"] == 3 and figures["methods"]["random"]["epochs"] == 20
    assert figures["compare"]["asha"]["to_match_a"] == {"seconds": 5.0, "epochs": 3.0}
    assert figures["compare"]["asha"]["epochs_to_match_over_a_epochs"] == pytest.approx(0.15)
