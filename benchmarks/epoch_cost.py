"""Where the epochs went: why one search method trains fewer epochs than another in the same
wall-clock budget, from the results.json of each method's run (`early_stopping.py --keep DIR`).

With equal budgets on the same workers every method keeps the workers busy, so the epochs trained
measure how many seconds each epoch cost. Per method, from every training's `timing.fit_s`, its
epochs (a promoted training counts the epochs it added) and its trial's start and end:

  fit s          the seconds inside Keras' `fit`, summed over the trainings
  after budget   the epochs trained after the budget's end (first trial start + --budget), which
                 the running trainings finish alone; each training's epochs counted as spread
                 evenly over its time
  overhead s     what each training pays once, whatever its length (the first epoch's tracing,
                 `fit`'s set-up), times the trainings: measured on the pairs of trainings of one
                 configuration with different lengths (a promoted training and its parent, the
                 same model on the same data): fit_s = overhead + epochs x per-epoch cost gives
                 both per pair; the median pair's overhead is used for every training
  epoch cost s   the rest of the fit seconds per epoch trained: what the models each method trains
                 cost per epoch (their size), with the epoch-weighted mean layers and parameters

and for `--compare A,B[,B...]` the ratio of B's epochs to A's as the product of three factors, exactly:

  epochs_B / epochs_A = (fit_B / fit_A) x ((1 - overhead share_B) / (1 - overhead share_A))
                        x (epoch cost_A / epoch cost_B)

and the seconds and epochs B had spent when it first ended a training scoring at least A's best
(the trainings ended by then in full, the running ones in proportion to their elapsed time), as
a share of all of A's epochs: the epochs B needed to match A, where equal budgets make the
epochs trained measure only speed.

    python benchmarks/epoch_cost.py --budget 480 --compare random,asha,hyperband \\
        random=KEEP/es-random-2.json asha=KEEP/es-asha-2.json hyperband=KEEP/es-hyperband-2.json \\
        --out FILE.json

Only the comprehensive space's dense models are sized (40 input features: the generated task's;
`--features` for another).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import iso_to_epoch, machine, save, table  # noqa: E402


def trainings(document: dict) -> list[dict]:
    """One row per finished training: its trial, configuration, epochs added, fit seconds, span."""
    rows = []
    for trial in document["trials"]:
        for execution in trial["executions"]:
            timing = execution.get("timing") or {}
            if timing.get("fit_s") is None or not trial.get("started") or not trial.get("ended"):
                continue  # a training without timing never finished (a failure, a stopped role)
            hps = trial.get("all_hyperparameters") or trial.get("hyperparameters") or {}
            epochs = len(execution.get("curve") or []) - (execution.get("promoted_from") or 0)
            rows.append({"trial": trial["trial_id"], "parent": hps.get("tuner/trial_id"), "hps": hps,
                         "score": trial.get("score"), "direction": document.get("direction", "max"),
                         "epochs": epochs, "fit_s": timing["fit_s"], "build_s": timing.get("build_s") or 0.0,
                         "start": iso_to_epoch(trial["started"]), "end": iso_to_epoch(trial["ended"])})
    return rows


def dense_size(hps: dict, features: int) -> tuple[int, int]:
    """Layers and weights of the comprehensive space's model for these hyperparameters."""
    layers = int(hps.get("num_layers", 0))
    inputs, weights = features, 0
    for i in range(layers):
        units = int(hps[f"units_{i}"])
        weights += (inputs + 1) * units
        inputs = units
    return layers, weights + inputs + 1


def overhead_pairs(rows: list[dict]) -> list[dict]:
    """Per-training overhead and per-epoch cost from each parent-child pair of different lengths."""
    by_trial = {r["trial"]: r for r in rows}
    pairs = []
    for child in rows:
        parent = by_trial.get(child["parent"])
        if parent and parent["epochs"] > 0 and child["epochs"] > 0 and parent["epochs"] != child["epochs"]:
            per_epoch = (child["fit_s"] - parent["fit_s"]) / (child["epochs"] - parent["epochs"])
            pairs.append({"parent": parent["trial"], "child": child["trial"], "epochs": [parent["epochs"], child["epochs"]],
                          "per_epoch_s": round(per_epoch, 3),
                          "overhead_s": round(parent["fit_s"] - parent["epochs"] * per_epoch, 3)})
    return pairs


def method_figures(rows: list[dict], budget: float, overhead: float, features: int) -> dict:
    """One method's epochs (all, and after the budget), fit seconds, overhead paid, per-epoch cost
    and the epoch-weighted size of the models it trained."""
    first = min(r["start"] for r in rows)
    cutoff = first + budget
    epochs = sum(r["epochs"] for r in rows)
    after = sum(r["epochs"] * (r["end"] - max(r["start"], cutoff)) / (r["end"] - r["start"])
                for r in rows if r["end"] > cutoff and r["end"] > r["start"])
    fit = sum(r["fit_s"] for r in rows)
    paid = overhead * len(rows)
    sizes = [(r["epochs"], *dense_size(r["hps"], features)) for r in rows]
    return {"trainings": len(rows), "epochs": epochs, "epochs_after_budget": round(after, 1),
            "fit_s": round(fit, 1), "build_s": round(sum(r["build_s"] for r in rows), 1),
            "overhead_s": round(paid, 1), "overhead_share": round(paid / fit, 3),
            "epoch_cost_s": round((fit - paid) / epochs, 3),
            "mean_layers": round(sum(e * n for e, n, _ in sizes) / epochs, 2),
            "mean_weights": round(sum(e * w for e, _, w in sizes) / epochs)}


def compare(a: dict, b: dict) -> dict:
    """epochs_b / epochs_a split into the fit-seconds, overhead and epoch-cost factors (their
    product is the ratio, up to rounding)."""
    return {"epochs_ratio": round(b["epochs"] / a["epochs"], 3),
            "fit_seconds_factor": round(b["fit_s"] / a["fit_s"], 3),
            "overhead_factor": round((1 - b["overhead_share"]) / (1 - a["overhead_share"]), 3),
            "epoch_cost_factor": round(a["epoch_cost_s"] / b["epoch_cost_s"], 3),
            "epochs_ratio_within_budget": round((b["epochs"] - b["epochs_after_budget"])
                                                / (a["epochs"] - a["epochs_after_budget"]), 3)}


def to_match(rows: list[dict], target: float) -> dict | None:
    """When a method first ended a training scoring at least `target` (another method's search
    best), and the epochs it had trained by then: the trainings ended before in full, the ones still
    running in proportion to their elapsed time. None when it never did."""
    better = (lambda s: s >= target) if rows[0]["direction"] == "max" else (lambda s: s <= target)
    hits = [r for r in rows if r["score"] is not None and better(r["score"])]
    if not hits:
        return None
    when = min(r["end"] for r in hits)
    epochs = sum(r["epochs"] * min(1.0, (when - r["start"]) / (r["end"] - r["start"]))
                 for r in rows if r["start"] < when and r["end"] > r["start"])
    return {"seconds": round(when - min(r["start"] for r in rows), 1), "epochs": round(epochs, 1)}


def read_document(path: Path) -> dict:
    """A results.json, or one kept gzipped (FILE.json.gz)."""
    return json.loads(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_text())


def method_file(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not METHOD=FILE: e.g. asha=keep/es-asha-2.json")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=method_file, metavar="METHOD=FILE",
                        help="a method's name and its run's results.json (early_stopping.py --keep; or gzipped)")
    parser.add_argument("--budget", type=float, required=True, help="the search budget the runs had (seconds)")
    parser.add_argument("--compare", type=lambda text: [m for m in text.split(",") if m], metavar="A,B[,B...]",
                        help="split each B's epochs / A's into factors, and say the epochs B needed to match A")
    parser.add_argument("--features", type=int, default=40, help="input features, for the models' sizes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = {name: trainings(read_document(path)) for name, path in args.runs}
    empty = [name for name, r in rows.items() if not r]
    if empty:
        raise SystemExit(f"{', '.join(empty)}: no finished training with its timing in the file: give a run's "
                         "results.json as early_stopping.py --keep writes it")
    pairs = [p for name in rows for p in overhead_pairs(rows[name])]
    if not pairs:
        raise SystemExit("no promoted training with its parent in these runs: give one of ASHA or Hyperband, "
                         "whose pairs measure the per-training overhead")
    overhead = statistics.median(p["overhead_s"] for p in pairs)
    quartiles = statistics.quantiles([p["overhead_s"] for p in pairs], n=4) if len(pairs) > 1 else [overhead] * 3
    methods = {name: method_figures(r, args.budget, overhead, args.features) for name, r in rows.items()}
    print(f"per-training overhead: median {overhead:.3f} s over {len(pairs)} pairs "
          f"(quartiles {quartiles[0]:.3f}, {quartiles[2]:.3f})")
    keys = list(next(iter(methods.values())))
    table(["method", *keys], [[name, *m.values()] for name, m in methods.items()])
    figures = {"machine": machine(), "command": " ".join(sys.argv), "budget_s": args.budget,
               "runs": {name: str(path) for name, path in args.runs},
               "overhead_s": {"median": overhead, "quartiles": [quartiles[0], quartiles[2]], "pairs": pairs},
               "methods": methods}
    if args.compare:
        a, *others = args.compare
        missing = [m for m in args.compare if m not in methods]
        if missing or not others:
            raise SystemExit(f"--compare {','.join(args.compare)}: give A and at least one B, each one of the "
                             f"METHOD=FILE runs (have {', '.join(methods)})")
        scored = [r["score"] for r in rows[a] if r["score"] is not None]
        best = (max if rows[a][0]["direction"] == "max" else min)(scored) if scored else None
        figures["compare"] = {"a": a, "a_search_best": best}
        for b in others:
            split = compare(methods[a], methods[b])
            match = to_match(rows[b], best) if best is not None else None
            split.update({"to_match_a": match,  # the epochs b needed to find a configuration as good as a's best
                          "epochs_to_match_over_a_epochs": round(match["epochs"] / methods[a]["epochs"], 3)
                          if match else None})
            figures["compare"][b] = split
            print(b, "against", a, json.dumps(split))
    save(figures, args.out, "epoch_cost")


if __name__ == "__main__":
    main()
