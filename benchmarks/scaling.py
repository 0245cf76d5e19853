"""Scaling benchmark: the same 12-trial pima-comprehensive random search (10 epochs), run three
ways one after another in one invocation, each timed end to end as a user would (process start,
imports, search, exit):

  1. stock Keras Tuner, one process (RandomSearch.search)
  2. tunecluster local backend, 1 worker
  3. tunecluster local backend, 2 workers

Prints wall time and trials/minute for each and the ratios, and for tunecluster the time from
`up` to the first trial started and each worker's peak resident memory; `--out FILE.json` also writes them
(the end-to-end ratio of 3 over 1 as `speedup_2_workers_vs_kt_single`).

    python benchmarks/scaling.py --out benchmarks/results/scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import iso_to_epoch, machine, run_up  # noqa: E402

KT_SCRIPT = textwrap.dedent("""
    import sys
    import keras_tuner as kt
    from tunecluster.tuning.datasets import load_splits
    from tunecluster.tuning.examples import example_spec
    from tunecluster.tuning.examples.pima import build_comprehensive

    spec = example_spec("pima-comprehensive")
    splits = load_splits(spec.data)
    tuner = kt.RandomSearch(lambda hp: build_comprehensive(hp, splits), objective="val_accuracy",
                            max_trials=int(sys.argv[2]), seed=1, directory=sys.argv[1],
                            project_name="kt-single", overwrite=True)
    tuner.search(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
                 epochs=int(sys.argv[3]), batch_size=32, verbose=0)
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    print("COMPLETED", len(done))
""")


def timed(cmd: list[str], cwd: str) -> tuple[float, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return elapsed, out.stdout


def completed_trials(run_dir: Path) -> int:
    document = json.loads((run_dir / "results.json").read_text())
    return sum(t["status"] == "COMPLETED" for t in document["trials"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="tunecluster-scaling-")
    script = Path(work) / "kt_single.py"
    script.write_text(KT_SCRIPT)
    rows = []

    wall, out = timed([sys.executable, str(script), str(Path(work) / "kt"), str(args.trials), str(args.epochs)], work)
    trials = int(out.split("COMPLETED")[-1].split()[0])
    rows.append({"name": "keras_tuner_single_process", "workers": 1, "wall_s": wall, "completed": trials})

    for workers in (1, 2):
        run_dir = Path(work) / f"tc-{workers}"
        result = run_up(["--example", "pima-comprehensive", "--workers", str(workers), "--max-trials",
                         str(args.trials), "--epochs", str(args.epochs)], run_dir, Path(work))
        first = min(iso_to_epoch(t["started"]) for t in result["document"]["trials"] if t.get("started"))
        rows.append({"name": f"tunecluster_local_{workers}_worker{'s' if workers > 1 else ''}",
                     "workers": workers, "wall_s": result["wall_s"], "completed": completed_trials(run_dir),
                     "up_to_first_trial_s": first - result["started_at"],
                     "peak_worker_rss_mib": result["peak_rss_mib"]})

    # With the same seed, 1 worker must sample exactly the trials stock Keras Tuner sampled.
    kt_values = {}
    for path in (Path(work) / "kt" / "kt-single").glob("trial_*/trial.json"):
        trial = json.loads(path.read_text())
        kt_values[int(trial["trial_id"])] = trial["hyperparameters"]["values"]
    tc_values = {int(t["trial_id"]): t["all_hyperparameters"]
                 for t in json.loads((Path(work) / "tc-1" / "results.json").read_text())["trials"]}
    same_trials = kt_values == tc_values

    for row in rows:
        row["trials_per_min"] = 60.0 * row["completed"] / row["wall_s"]
    base = rows[0]["wall_s"]
    figures = {
        "search": f"pima-comprehensive random search, {args.trials} trials x {args.epochs} epochs",
        "machine": {**machine(), "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs": rows,
        "speedup_1_worker_vs_kt_single": base / rows[1]["wall_s"],
        "speedup_2_workers_vs_kt_single": base / rows[2]["wall_s"],
        "speedup_2_workers_vs_1_worker": rows[1]["wall_s"] / rows[2]["wall_s"],
        "same_trials_kt_single_and_1_worker": same_trials,
    }
    print(f"{'run':32} {'workers':>7} {'wall s':>8} {'trials':>6} {'trials/min':>10}")
    for row in rows:
        print(f"{row['name']:32} {row['workers']:>7} {row['wall_s']:>8.1f} {row['completed']:>6} {row['trials_per_min']:>10.1f}")
    print(f"speedup, tunecluster 1 worker vs Keras Tuner single process:  {figures['speedup_1_worker_vs_kt_single']:.2f}x")
    print(f"speedup, tunecluster 2 workers vs Keras Tuner single process: {figures['speedup_2_workers_vs_kt_single']:.2f}x")
    print(f"speedup, tunecluster 2 workers vs 1 worker:                    {figures['speedup_2_workers_vs_1_worker']:.2f}x")
    for row in rows[1:]:
        print(f"{row['name']}: first trial started {row['up_to_first_trial_s']:.1f} s after `up`; peak worker RSS "
              + ", ".join(f"{k} {v:.0f} MiB" for k, v in sorted(row["peak_worker_rss_mib"].items())))
    print(f"1 worker sampled the same {len(tc_values)} trials as stock Keras Tuner: {same_trials}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
