"""Bayesian result quality: tunecluster's oracle (`fast_oracles`: the Gaussian process fitted
outside the lock, exact-gradient acquisition, kernel re-optimised as the data grows) against Keras
Tuner's own `BayesianOptimizationOracle`, on the real Pima comprehensive search (32
hyperparameters), over several seeds. Only the oracle differs: both are driven by the same loop in
this process (create_trial, build with `pima.build_comprehensive`, update_space, fit, end_trial),
one trial at a time, each training seeded by (seed, trial number) as the workers do, so the two
searches get the same randomness wherever they ask for the same thing. The figure is the best
validation accuracy each search found (mean over seeds), and the time of each suggestion.

    python benchmarks/bayesian_quality.py --out benchmarks/results/bayesian_quality.json
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine, save, table  # noqa: E402


def make_oracle(kind: str, seed: int, trials: int, initial: int):
    import keras_tuner as kt

    from tunecluster.tuning.bayesian_oracle import BayesianOptimizationOracle

    cls = BayesianOptimizationOracle if kind == "tunecluster" else kt.oracles.BayesianOptimizationOracle
    oracle = cls(objective=kt.Objective("val_accuracy", "max"), max_trials=trials,
                 num_initial_points=initial, seed=seed)
    oracle._set_project_dir(tempfile.mkdtemp(prefix=f"bq-{kind}-"), "bq")
    oracle.verbose = 0  # no per-trial tables on stdout
    return oracle


def search(kind: str, seed: int, trials: int, initial: int, epochs: int, splits) -> dict:
    import keras
    import numpy as np
    from keras_tuner.src.engine import trial as trial_module

    from tunecluster.tuning.examples.pima import build_comprehensive

    oracle = make_oracle(kind, seed, trials, initial)
    scores, suggest_s = [], []
    for number in range(trials):
        started = time.perf_counter()
        trial = oracle.create_trial("tuner0")
        suggest_s.append(time.perf_counter() - started)
        if trial.status == trial_module.TrialStatus.STOPPED:
            break
        digest = hashlib.sha256(f"{seed}/{number}".encode()).digest()
        keras.backend.clear_session()
        keras.utils.set_random_seed(int.from_bytes(digest[:4], "big"))
        hp = trial.hyperparameters
        model = build_comprehensive(hp, splits)
        oracle.update_space(hp)
        history = model.fit(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
                            epochs=epochs, batch_size=32, verbose=0)
        best = float(np.max(history.history["val_accuracy"]))
        oracle.update_trial(trial.trial_id, {"val_accuracy": best}, step=0)
        trial.status = trial_module.TrialStatus.COMPLETED
        oracle.end_trial(trial)
        scores.append(best)
    model_phase = suggest_s[initial:] or [float("nan")]
    return {"best": max(scores), "trials": len(scores), "scores": scores,
            "suggest_ms_median_after_initial": 1000 * sorted(model_phase)[len(model_phase) // 2],
            "suggest_ms_max": 1000 * max(suggest_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--initial", type=int, default=10, help="random trials before the model")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from tunecluster.tuning.datasets import load_splits
    from tunecluster.tuning.examples import csv_path
    from tunecluster.tuning.spec import DataSpec

    splits = load_splits(DataSpec(csv=str(csv_path()), target="Outcome"))
    seeds = [int(s) for s in args.seeds.split(",")]
    before = machine()
    runs: dict[str, dict] = {"tunecluster": {}, "keras_tuner": {}}
    rows = []
    for seed in seeds:
        for kind in runs:
            started = time.time()
            result = search(kind, seed, args.trials, args.initial, args.epochs, splits)
            result["wall_s"] = time.time() - started
            runs[kind][str(seed)] = result
            rows.append([seed, kind, result["best"], result["trials"], result["suggest_ms_median_after_initial"],
                         result["suggest_ms_max"], result["wall_s"]])
            print(f"seed {seed} {kind:12s} best {result['best']:.4f} ({result['trials']} trials, "
                  f"{result['wall_s']:.0f} s)", flush=True)
    table(["seed", "oracle", "best val acc", "trials", "suggest ms (median)", "suggest ms (max)", "wall s"], rows)
    means = {kind: sum(r["best"] for r in runs[kind].values()) / len(seeds) for kind in runs}
    figures = {"benchmark": "bayesian_quality", "machine_before": before, "machine_after": machine(),
               "space": "pima comprehensive (32 hyperparameters)", "trials": args.trials,
               "num_initial_points": args.initial, "epochs": args.epochs, "seeds": seeds, "runs": runs,
               "best_mean_tunecluster": means["tunecluster"], "best_mean_keras_tuner": means["keras_tuner"],
               "best_mean_difference": means["tunecluster"] - means["keras_tuner"]}
    print(f"best validation accuracy, mean over seeds {seeds}: tunecluster {means['tunecluster']:.4f}, "
          f"Keras Tuner {means['keras_tuner']:.4f} (difference {figures['best_mean_difference']:+.4f})")
    save(figures, args.out, "bayesian_quality")


if __name__ == "__main__":
    main()
