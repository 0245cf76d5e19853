"""No-training trials per second, end to end, side by side in one run: stock Keras Tuner (a chief
and 2 worker processes whose `run_trial` returns at once, Keras Tuner's own distributed mode) and
tunecluster (`up` with 2 local workers and a `run_trial` function that returns at once,
`instant_trial.py`), with the same one-hyperparameter random search and trial count; at 300 and
3000 trials (Keras Tuner's chief does work per trial that grows with the search). A third row,
tunecluster with a real one-layer Keras model built, checked and saved per trial but no training
(`sleep_model.py` at 0 s), shows what a Keras model per trial costs.

trials/s = completed trials / the search's span: tunecluster's from results.json (first trial
started to last ended); Keras Tuner's from its workers (their `search()` calls, which start once
TensorFlow is imported and the tuner built, and end after their last trial). Keras Tuner's chief
runs on tunecluster's stand-in for Keras (no TensorFlow import), as in `oracle_throughput.py`;
its per-trial work is unchanged. Figures `trials_per_s` per row and `ratio_vs_keras_tuner`.

    python benchmarks/no_training.py --out benchmarks/results/no_training.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import iso_to_epoch, machine, run_up, save, table  # noqa: E402

KT_ROLE = textwrap.dedent("""
    import json, os, sys, time
    if os.environ["KERASTUNER_TUNER_ID"] == "chief":
        sys.path.insert(0, %(repo)r)
        from tunecluster.kt_compat import keras_stub
        keras_stub.install()
    import keras_tuner as kt

    class NoTraining(kt.RandomSearch):
        def run_trial(self, trial, *args, **kwargs):
            x = trial.hyperparameters.Int("x", 0, 1_000_000)
            return {"val_accuracy": 0.5 + (x %% 1000) / 2000.0}

    def build(hp):  # declares the space; never trained
        hp.Int("x", 0, 1_000_000)

    tuner = NoTraining(hypermodel=build, objective=kt.Objective("val_accuracy", "max"), max_trials=%(trials)d,
                       seed=1, directory=sys.argv[1], project_name="kt", overwrite=False)
    tuner.oracle.verbose = 0
    start = time.time()
    tuner.search(verbose=0)
    print(json.dumps({"start": start, "end": time.time()}), flush=True)
""")


def keras_tuner_run(trials: int, workers: int, work: Path) -> dict:
    from tunecluster.core.network import free_port

    work.mkdir(parents=True)
    script = work / "kt_role.py"
    script.write_text(KT_ROLE % {"repo": str(HERE.parent), "trials": trials})
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port()),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.time()
    chief = subprocess.Popen([sys.executable, str(script), str(work / "dir")], env={**env, "KERASTUNER_TUNER_ID": "chief"},
                             stdout=subprocess.DEVNULL, stderr=open(work / "chief.log", "w"))
    try:
        roles = [subprocess.Popen([sys.executable, str(script), str(work / "dir")],
                                  env={**env, "KERASTUNER_TUNER_ID": f"tuner{i}"}, stdout=subprocess.PIPE,
                                  stderr=open(work / f"worker{i}.log", "w"), text=True) for i in range(workers)]
        spans = []
        for role in roles:
            out, _ = role.communicate(timeout=1800)
            if role.returncode != 0:
                raise SystemExit(f"a Keras Tuner worker failed: {(work / 'worker0.log').read_text()[-2000:]}")
            spans.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        chief.kill()
        chief.wait()
    done = sum(1 for p in (work / "dir" / "kt").glob("trial_*/trial.json")
               if json.loads(p.read_text()).get("status") == "COMPLETED")
    span = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    return {"system": "keras_tuner", "trials": done, "span_s": span, "trials_per_s": done / span,
            "wall_s": time.time() - started}


def tunecluster_run(trials: int, workers: int, work: Path, keras_model: bool) -> dict:
    from tunecluster.tuning.examples import csv_path

    work.mkdir(parents=True)
    trainer = ({"hypermodel": f"{HERE / 'sleep_model.py'}:build"} if keras_model
               else {"run_trial": f"{HERE / 'instant_trial.py'}:run_trial"})
    spec = {"name": "no-training", **trainer, "data": {"csv": str(csv_path()), "target": "Outcome"},
            "tuner": {"kind": "random", "max_trials": trials, "seed": 1},
            "fit": {"epochs": 1, "tensorboard": False}, "cluster": {"workers": workers}}
    (work / "spec.yaml").write_text(json.dumps(spec))
    os.environ["SLEEP_MODEL_SECONDS"] = "0"
    os.environ["INSTANT_TRIAL_SECONDS"] = "0"
    result = run_up(["-f", "spec.yaml"], work / "run", work)
    done = [t for t in result["document"]["trials"] if t["status"] == "COMPLETED"]
    span = max(iso_to_epoch(t["ended"]) for t in done) - min(iso_to_epoch(t["started"]) for t in done)
    return {"system": "tunecluster_keras_model" if keras_model else "tunecluster", "trials": len(done),
            "span_s": span, "trials_per_s": len(done) / span, "wall_s": result["wall_s"],
            "peak_worker_rss_mib": result["peak_rss_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", default="300,3000", help="trial counts, one search each")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keras-model-trials", type=int, default=300,
                        help="trials of the Keras-model row (0: skip it)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunecluster-no-training-"))
    before = machine()
    rows = []
    for trials in [int(t) for t in args.trials.split(",")]:
        for system in ("keras_tuner", "tunecluster"):  # side by side at each size
            row = (keras_tuner_run(trials, args.workers, work / f"kt-{trials}") if system == "keras_tuner"
                   else tunecluster_run(trials, args.workers, work / f"tc-{trials}", keras_model=False))
            row["max_trials"] = trials
            rows.append(row)
            print(f"{system:12} {trials:5} trials: {row['trials_per_s']:7.1f} trials/s "
                  f"({row['trials']} in {row['span_s']:.2f} s)", flush=True)
    if args.keras_model_trials:
        row = tunecluster_run(args.keras_model_trials, args.workers, work / "tc-keras", keras_model=True)
        row["max_trials"] = args.keras_model_trials
        rows.append(row)
    ratio = {}
    for trials in sorted({r["max_trials"] for r in rows}):
        level = {r["system"]: r for r in rows if r["max_trials"] == trials}
        if "keras_tuner" in level and "tunecluster" in level:
            ratio[str(trials)] = level["tunecluster"]["trials_per_s"] / level["keras_tuner"]["trials_per_s"]
    print()
    table(["system", "max trials", "completed", "span s", "trials/s", "vs Keras Tuner"],
          [[r["system"], r["max_trials"], r["trials"], r["span_s"], r["trials_per_s"],
            ratio.get(str(r["max_trials"])) if r["system"] == "tunecluster" else ""] for r in rows])
    figures = {"benchmark": "no_training", "machine_before": before, "machine_after": machine(),
               "workers": args.workers, "rows": rows, "ratio_vs_keras_tuner": ratio}
    save(figures, args.out, "no_training")


if __name__ == "__main__":
    main()
