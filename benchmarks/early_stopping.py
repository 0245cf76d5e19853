"""Early-stopping benchmark: the Pima comprehensive space searched side by side, in one run, by

  random     random search, every training to max_epochs
  hyperband  tunecluster's Hyperband (max_epochs, factor 3)
  median     random search with median stopping (grace 3 epochs, 3 trials)
  asha       ASHA (min_epochs 1, max_epochs, eta 3)

each with the same number of configurations (`--configs`) on `--workers` workers, for each seed,
and the confirmation stage (top 3 retrained 3 times, test rows held out) after each. Per method
and seed: wall time, epochs trained (promoted trials count only the epochs they added), worker
utilisation (busy / (wall x workers) from the report's timeline), time from the first trial to
the best trial's end, and the confirmed winner's validation and test accuracy; then the mean and
spread over seeds.

    python benchmarks/early_stopping.py --out benchmarks/results/early_stopping.json

Not done here yet (see docs/early-stopping.md): stock Keras Tuner's Hyperband with two stock
workers, an equal wall-clock budget per method (the methods get an equal number of
configurations instead), the larger generated task, and 8-worker utilisation. `--quick` is a
smoke run (1 seed, 3 epochs, 3 configurations); its figures measure nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import iso_to_epoch, machine, save, table  # noqa: E402

METHODS = ("random", "hyperband", "median", "asha")


def spec_for(method: str, seed: int, configs: int, max_epochs: int, workers: int, confirm: tuple) -> dict:
    from tunecluster.tuning.examples import example_spec

    spec = example_spec("pima-comprehensive").model_dump(mode="json")
    spec["name"] = f"es-{method}-{seed}"
    spec["data"]["test_fraction"] = 0.2
    tuner = spec["tuner"]
    tuner.update(seed=seed, max_trials=configs, kind="random")
    spec["fit"].update(epochs=max_epochs, tensorboard=False)
    spec["confirm"].update(enabled=True, top=confirm[0], repeats=confirm[1])
    spec["cluster"].update(workers=workers)
    if method == "hyperband":
        tuner.update(kind="hyperband", hyperband={"max_epochs": max_epochs, "factor": 3, "hyperband_iterations": 1})
    elif method == "median":
        tuner["early_stopping"] = {"kind": "median", "grace_epochs": min(3, max_epochs), "min_trials": 3}
    elif method == "asha":
        tuner.update(kind="asha", asha={"min_epochs": 1, "max_epochs": max_epochs, "reduction_factor": 3})
    return spec


def run_method(work: Path, spec: dict, workers: int) -> dict:
    folder = work / spec["name"]
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    started = time.time()
    with (folder / "up.log").open("w") as log:
        code = subprocess.call([sys.executable, "-m", "tunecluster", "up", "-f", "spec.yaml", "--dir", "run"],
                               cwd=folder, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=log,
                               stderr=subprocess.STDOUT)
    wall = time.time() - started
    if code != 0:
        raise SystemExit(f"{spec['name']}: up failed ({code}), see {folder / 'up.log'}")
    return figures(folder / "run", wall, workers)


def figures(run: Path, wall: float, workers: int) -> dict:
    from tunecluster.report.data import load_run, utilisation

    document = json.loads((run / "results.json").read_text())
    trials = document["trials"]
    epochs = 0
    for trial in trials:
        for execution in trial["executions"]:
            epochs += len(execution.get("curve") or []) - (execution.get("promoted_from") or 0)
    scored = [t for t in trials if t["score"] is not None and t["ended"]]
    best = (max if document["direction"] == "max" else min)(scored, key=lambda t: t["score"]) if scored else None
    first = min(iso_to_epoch(t["started"]) for t in trials if t["started"])
    winner = next((t for t in trials if t["trial_id"] == document.get("best_trial")), None)
    confirmed = (winner or {}).get("confirmed") or {}
    usage = utilisation(load_run(run))
    busy = sum(w["busy_s"] for w in usage["workers"].values())
    return {"wall_s": round(wall, 1), "trials": len(trials), "epochs_trained": epochs,
            "stopped_early": sum(1 for t in trials if t["status"] == "STOPPED_EARLY"),
            "utilisation": round(busy / (usage["window_s"] * workers), 3) if usage["window_s"] else None,
            "time_to_best_s": round(iso_to_epoch(best["ended"]) - first, 1) if best else None,
            "confirmed_validation": confirmed.get("mean"), "confirmed_test": confirmed.get("test_mean")}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in ("wall_s", "epochs_trained", "utilisation", "time_to_best_s", "confirmed_validation", "confirmed_test"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = {"mean": statistics.fmean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=81)
    parser.add_argument("--configs", type=int, default=27)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 3 epochs, 3 configurations")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.max_epochs, args.configs = 1, 3, 3
    confirm = (1, 1) if args.quick else (3, 3)
    methods = [m for m in args.methods.split(",") if m]
    results: dict[str, list] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(prefix="tc-early-stopping-") as tmp:
        for seed in range(1, args.seeds + 1):
            for method in methods:
                spec = spec_for(method, seed, args.configs, args.max_epochs, args.workers, confirm)
                results[method].append({"seed": seed, **run_method(Path(tmp), spec, args.workers)})
    summary = {m: summarise(runs) for m, runs in results.items()}
    table(["method", "wall s", "epochs", "util", "to best s", "conf. val", "conf. test"],
          [[m, s["wall_s"]["mean"], s["epochs_trained"]["mean"], s["utilisation"]["mean"], s["time_to_best_s"]["mean"],
            s["confirmed_validation"]["mean"], s["confirmed_test"]["mean"]] for m, s in summary.items()])
    save({"machine": machine(), "quick": args.quick, "workers": args.workers, "max_epochs": args.max_epochs,
          "configs": args.configs, "seeds": args.seeds, "runs": results, "summary": summary,
          "not_measured": ["stock Keras Tuner Hyperband with two stock workers", "equal wall-clock budgets",
                           "larger generated task", "8-worker utilisation"]}, args.out, "early_stopping")


if __name__ == "__main__":
    main()
