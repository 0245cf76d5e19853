"""`up --example pima-all`'s claims table on constructed phase runs: the tutorial's figures quoted as
the project's notes on it give them, each claim checked (agrees, difference, beyond the confirmed
spread), pima-all.json holding the table's rows; `--budget tutorial`'s trials and epochs; `--chain`
carrying a constructed earlier phase's confirmed winner into the next phases' hypermodel_args."""

from __future__ import annotations

import functools

import pytest

from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, write_atomic, write_json
from tunecluster.tuning.examples import ALL_PHASE_ORDER, example_spec
from tunecluster.tuning.examples.tutorial import CLAIMS
from tunecluster.tuning.spec import dump_spec

# The tutorial's reported results, as the shared notes on it give them.
QUOTED = {
    "phase 1: optimizer": ["rmsprop", "0.740", "sgd 0.650", "adadelta 0.620", "adam 0.538"],
    "phase 2: units": ["128 units"],
    "phase 3: layers": ["6 layers"],
    "phase 4: comprehensive": ["~0.85"],
    "baseline": ["~0.70", "32 units", "one layer", "adam"],
    "improvement": ["15 %"],
    "dropout": ["0.2–0.4"],
}


def _trial(trial_id, hps, score, confirmed=None, status="COMPLETED"):
    return {"trial_id": trial_id, "status": status, "score": score, "hyperparameters": hps,
            "confirmed": None if confirmed is None else
            {"mean": confirmed[0], "std": confirmed[1], "runs": 3, "test_mean": confirmed[0] - 0.01,
             "test_std": 0.01}}


def _phase(root, name, trials, budget=None, args=None):
    """A finished phase run: spec.yaml, progress.json and results.json (confirmed ranking best first)."""
    run = RunDir(root / name)
    run.root.mkdir(parents=True)
    write_atomic(run.spec, dump_spec(example_spec(name, budget, args)))
    write_json(run.progress, {"finished": True})
    ranked = sorted((t for t in trials if t["confirmed"]), key=lambda t: -t["confirmed"]["mean"])
    write_json(run.results_json, {
        "experiment": name, "direction": "max", "trials": trials,
        "best_trial": ranked[0]["trial_id"] if ranked else None,
        "confirmation": {"ranking": [t["trial_id"] for t in ranked], "overlap": False}})
    return run


@pytest.fixture
def constructed(tmp_path):
    """Five phases with known confirmed scores."""
    _phase(tmp_path, "pima-optimizer", [
        _trial("0", {"optimizer": "rmsprop"}, 0.78, (0.760, 0.010)),
        _trial("1", {"optimizer": "adam"}, 0.74, (0.700, 0.010)),
        _trial("2", {"optimizer": "sgd"}, 0.66)])
    _phase(tmp_path, "pima-units", [
        _trial("0", {"units": 104}, 0.79, (0.780, 0.020)),
        _trial("1", {"units": 128}, 0.78, (0.770, 0.020))])
    _phase(tmp_path, "pima-layers", [
        _trial("0", {"num_layers": 4}, 0.79, (0.780, 0.010)),
        _trial("1", {"num_layers": 6}, 0.70)])
    _phase(tmp_path, "pima-comprehensive", [
        _trial("0", {"num_layers": 1, "units_0": 64, "dropout_0": 0.3, "optimizer": "adam"}, 0.8, (0.780, 0.010)),
        _trial("1", {"num_layers": 1, "units_0": 32, "dropout_0": 0.6, "optimizer": "sgd"}, 0.79, (0.750, 0.010))])
    _phase(tmp_path, "pima-baseline", [_trial("0", {"units": 32, "optimizer": "adam"}, 0.7, (0.700, 0.020))])
    return tmp_path


def _rows(root, codes=None):
    from tunecluster.cli.pima_all import summary

    outcomes = [(name, RunDir(root / name), (codes or {}).get(name, 0), 12.5) for name in ALL_PHASE_ORDER]
    return summary(outcomes, root, None, False, {})


def test_every_claim_quotes_the_tutorials_figures():
    texts = {claim["row"]: claim["text"] for claim in CLAIMS}
    assert list(texts) == list(QUOTED)
    for row, fragments in QUOTED.items():
        for fragment in fragments:
            assert fragment in texts[row], (row, fragment)
    # a value the tutorial only fixes is never quoted as a result
    assert "72" not in texts["phase 2: units"]


def test_each_claim_says_whether_the_run_agrees_and_whether_the_difference_is_beyond_the_spread(constructed):
    title, rows, document = _rows(constructed)
    by_row = {row["row"]: row for row in rows}
    optimizer = by_row["phase 1: optimizer"]
    assert (optimizer["agrees"], optimizer["difference"], optimizer["beyond_spread"]) == ("yes", "+0.060", "yes")
    assert "optimizer=rmsprop confirmed 0.760 ± 0.010 against the tutorial's 0.740 (beyond its spread)" in optimizer["note"]
    assert "search's best per value: rmsprop 0.780, adam 0.740, sgd 0.660" in optimizer["note"]
    units = by_row["phase 2: units"]  # 104 won, 128 was confirmed too: 0.780 ± 0.020 against 0.770 ± 0.020
    assert (units["agrees"], units["difference"], units["beyond_spread"]) == ("no", "+0.010", "no")
    layers = by_row["phase 3: layers"]  # 6 layers ran but was not confirmed
    assert (layers["agrees"], layers["beyond_spread"]) == ("no", "not measured")
    assert "num_layers=6 was not among the confirmed configurations" in layers["note"]
    tuned = by_row["phase 4: comprehensive"]
    assert (tuned["agrees"], tuned["difference"], tuned["beyond_spread"]) == ("no", "-0.070", "yes")
    assert tuned["test"] == "0.770 ± 0.010"
    baseline = by_row["baseline"]
    assert (baseline["agrees"], baseline["difference"], baseline["beyond_spread"]) == ("yes", "+0.000", "no")
    assert "units=32, optimizer=adam; confirmed 0.700 ± 0.020" in baseline["this_run"]
    improvement = by_row["improvement"]  # +0.080 measured, spread hypot(0.010, 0.020) = 0.022
    assert improvement["this_run"].startswith("+0.080 (0.780 against 0.700); spread ± 0.022")
    assert (improvement["agrees"], improvement["difference"], improvement["beyond_spread"]) == ("no", "-0.070", "yes")
    assert improvement["note"] == "the tuned model beats the baseline beyond both spreads"
    dropout = by_row["dropout"]  # the winner's 0.3 is inside; 0.780 ± 0.010 against 0.750 ± 0.010 (dropout 0.6)
    assert (dropout["agrees"], dropout["difference"], dropout["beyond_spread"]) == ("yes", "+0.030", "yes")
    assert "tunecluster's budget" in title and "optimizer 12x10" in title and "baseline 1x10" in title
    assert "unchained" in title


def test_the_json_holds_the_tables_rows(constructed):
    from rich.console import Console

    from tunecluster.core.rundir import read_json
    from tunecluster.ui.tables import phase_table

    title, rows, document = _rows(constructed)
    saved = read_json(constructed / "pima-all.json")
    assert saved == document and saved["rows"] == rows
    assert [p["seconds"] for p in saved["phases"]] == [12.5] * 5
    console = Console(width=400, record=True)
    console.print(phase_table(title, rows))
    text = console.export_text()
    for row in rows:
        for cell in ("row", "claim", "agrees", "difference", "beyond_spread"):
            assert row[cell] in text


def test_a_failed_phase_is_said_so(constructed):
    RunDir(constructed / "pima-layers").results_json.unlink()
    _, rows, _ = _rows(constructed, codes={"pima-layers": 1})
    layers = next(r for r in rows if r["row"] == "phase 3: layers")
    assert layers["note"] == "failed (exit 1)" and layers["agrees"] == "not measured"


@pytest.mark.parametrize("budget, sizes", [
    (None, {"pima-optimizer": (12, 10), "pima-units": (12, 10), "pima-layers": (12, 10),
            "pima-comprehensive": (12, 10), "pima-baseline": (1, 10)}),
    ("tutorial", {"pima-optimizer": (5, 5), "pima-units": (5, 10), "pima-layers": (5, 10),
                  "pima-comprehensive": (20, 10), "pima-baseline": (1, 10)}),
])
def test_budgets(budget, sizes):
    for name, (trials, epochs) in sizes.items():
        spec = example_spec(name, budget)
        assert (spec.tuner.max_trials, spec.fit.epochs) == (trials, epochs), name
    assert example_spec("pima-baseline", budget).confirm.top == 1


def test_the_table_says_which_budget(tmp_path):
    from tunecluster.cli.pima_all import summary

    for name in ALL_PHASE_ORDER:
        _phase(tmp_path, name, [_trial("0", {"optimizer": "adam"}, 0.7, (0.7, 0.01))], budget="tutorial")
    title, _, document = summary([(n, RunDir(tmp_path / n), 0, None) for n in ALL_PHASE_ORDER],
                                 tmp_path, "tutorial", False, {})
    assert "the tutorial's budget (it gives none for the layers phase: 5x10 used)" in title
    assert "optimizer 5x5, units 5x10, layers 5x10, comprehensive 20x10" in title
    assert document["budget"] == "tutorial"


def test_bad_budget_and_budget_without_an_example():
    from tunecluster.tuning.spec_source import resolve_spec

    with pytest.raises(UsageError, match="unknown budget 'huge'"):
        example_spec("pima-units", "huge")
    with pytest.raises(UsageError, match="--budget sets the trials and epochs of the Pima examples"):
        resolve_spec("tunecluster.yaml", None, "tutorial")


def test_chaining_carries_a_constructed_phases_confirmed_winner(tmp_path):
    from tunecluster.cli.pima_all import carry, phase_spec
    from tunecluster.tuning.overrides import Overrides

    # phase 1's search liked adam best, but the confirmation stage ranked sgd first: sgd is carried
    _phase(tmp_path, "pima-optimizer", [
        _trial("0", {"optimizer": "adam"}, 0.80, (0.700, 0.010)),
        _trial("1", {"optimizer": "sgd"}, 0.75, (0.760, 0.010))])
    carried: dict = {}
    assert carry("pima-optimizer", RunDir(tmp_path / "pima-optimizer"), carried) == {"optimizer": "sgd"}
    spec, args = phase_spec("pima-units", Overrides(epochs=1), None, carried)
    assert args == {"optimizer": "sgd"} and spec.hypermodel_args == {"optimizer": "sgd"} and spec.fit.epochs == 1
    _phase(tmp_path, "pima-units", [_trial("0", {"units": 40}, 0.8, (0.78, 0.01))], args=args)
    carry("pima-units", RunDir(tmp_path / "pima-units"), carried)
    spec, _ = phase_spec("pima-layers", Overrides(), None, carried)
    assert spec.hypermodel_args == {"optimizer": "sgd", "units": 40}
    _phase(tmp_path, "pima-layers", [_trial("0", {"num_layers": 3}, 0.8, (0.78, 0.01))])
    carry("pima-layers", RunDir(tmp_path / "pima-layers"), carried)
    spec, _ = phase_spec("pima-comprehensive", Overrides(), None, carried)
    assert spec.hypermodel_args == {"optimizer": "sgd", "num_layers": 3}
    spec, _ = phase_spec("pima-baseline", Overrides(max_trials=7), None, carried)
    assert spec.hypermodel_args == {} and spec.tuner.max_trials == 1  # the baseline is never tuned
    # without --chain, the tutorial's fixed values
    assert phase_spec("pima-units", Overrides(), None, {})[0].hypermodel_args == {}


def test_chaining_refuses_a_phase_without_a_winner(tmp_path):
    from tunecluster.cli.pima_all import carry

    _phase(tmp_path, "pima-optimizer", [_trial("0", {"optimizer": "adam"}, None, status="FAILED")])
    with pytest.raises(UsageError, match="--chain: pima-optimizer found no winner"):
        carry("pima-optimizer", RunDir(tmp_path / "pima-optimizer"), {})


def test_hypermodel_args_reach_the_function_and_unknown_ones_are_refused():
    from tunecluster.cluster.worker.loop import bind_hypermodel
    from tunecluster.tuning.spec import validate_spec
    from tunecluster.tuning.spec_hypermodel_args import check_accepts

    def build(hp, data, optimizer="rmsprop", units=72):
        return (hp, data, optimizer, units)

    assert bind_hypermodel(build, "splits", {"optimizer": "sgd"})("hp") == ("hp", "splits", "sgd", 72)
    assert bind_hypermodel(functools.partial(build, data="d"), None, {"units": 8})("hp") == ("hp", "d", "rmsprop", 8)
    check_accepts(build, {"optimizer": "sgd"}, "m:build")
    with pytest.raises(ValueError, match="hypermodel_args: m:build takes no argument 'width'"):
        check_accepts(build, {"width": 3}, "m:build")
    with pytest.raises(UsageError, match="hypermodel_args.units"):
        validate_spec({"hypermodel_args": {"units": [1, 2]}})


def test_hypermodel_args_are_checked_before_anything_starts(tmp_path):
    from tunecluster.tuning.preflight import preflight

    spec = example_spec("pima-units", None, {"optimizer": "sgd"})
    preflight(spec)  # build_units takes optimizer
    with pytest.raises(UsageError, match="hypermodel_args: tunecluster.tuning.examples.pima:build_units takes "
                                         "no argument 'width'"):
        preflight(example_spec("pima-units", None, {"width": 3}))
    forest = example_spec("pima-forest").model_copy(update={"hypermodel_args": {"trees": 3}})
    with pytest.raises(UsageError, match="hypermodel_args: only a hypermodel function takes them"):
        preflight(forest)


def test_final_section_checks():
    from tunecluster.tuning.spec import validate_spec
    from tunecluster.tuning.spec_final import check_final

    spec = validate_spec({"fit": {"epochs": 5}, "final": {"epochs": 100, "early_stopping_patience": 3}})
    assert (spec.final.epochs, spec.final.early_stopping_patience, spec.final.from_checkpoint) == (100, 3, True)
    assert validate_spec({}).final is None
    check_final(spec)
    with pytest.raises(UsageError, match=r"final.epochs \(5\) must be more than fit.epochs \(5\)"):
        check_final(validate_spec({"fit": {"epochs": 5}, "final": {"epochs": 5}}))
    check_final(validate_spec({"fit": {"epochs": 5}, "final": {"epochs": 5, "from_checkpoint": False}}))
    with pytest.raises(UsageError, match="final: a run_trial search exports no Keras model"):
        check_final(validate_spec({"run_trial": "m:f", "final": {}}))
    with pytest.raises(UsageError, match="final.patience: unknown key; allowed keys here: early_stopping_patience, "
                                         "epochs, from_checkpoint"):
        validate_spec({"final": {"patience": 3}})
