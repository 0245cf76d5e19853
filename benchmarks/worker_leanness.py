"""Worker leanness: one worker runs N trials (1 epoch each, TensorBoard off) and its resident
memory is sampled after every trial. By default every trial trains the same network
(`fixed_model.py`), so per-trial times are comparable; `--comprehensive` draws them from the Pima
comprehensive space instead (up to 10 x 512 units: time varies with the network drawn). Prints
per-trial time and RSS for trials 5..N and compares the mean of trials 5-10 with the mean of the last 5 (flat within 10% is the target).

    python benchmarks/worker_leanness.py --out benchmarks/results/worker_leanness.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine, rss_mib, run_up, save, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--comprehensive", action="store_true", help="networks from the comprehensive space")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from tunecluster.tuning.examples import csv_path

    work = Path(tempfile.mkdtemp(prefix="tunecluster-lean-"))
    (work / "spec.yaml").write_text(json.dumps({
        "name": "lean", "hypermodel": ("tunecluster.tuning.examples.pima:build_comprehensive" if args.comprehensive
                                      else f"{HERE / 'fixed_model.py'}:build"),
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"kind": "random", "max_trials": args.trials, "seed": 1},
        "fit": {"epochs": 1, "tensorboard": False}, "cluster": {"workers": 1}}))
    rss_after: dict[int, float] = {}

    def on_trial(document, pids):
        done = sum(1 for t in document["trials"] if t.get("ended"))
        rss = rss_mib(pids.get("worker-0", 0))
        if rss:
            rss_after[done] = rss

    before = machine()
    result = run_up(["-f", "spec.yaml"], work / "run", work, on_trial=on_trial)
    trials = sorted((t for t in result["document"]["trials"] if t["status"] == "COMPLETED"),
                    key=lambda t: int(t["trial_id"]))
    rows = [[i + 1, t["duration_s"], rss_after.get(i + 1)] for i, t in enumerate(trials)]
    table(["trial", "seconds", "RSS MiB after"], [r for r in rows if r[0] >= 5 and (r[0] % 5 == 0 or r[0] == 5)])
    early = [r for r in rows if 5 <= r[0] <= 10]
    late = rows[-5:]

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else float("nan")

    figures = {
        "benchmark": "worker_leanness",
        "hypermodel": "pima comprehensive space" if args.comprehensive else "fixed 3 x 32 network",
        "machine_before": before, "machine_after": machine(),
        "trials": len(trials), "per_trial": [{"trial": r[0], "seconds": r[1], "rss_mib": r[2]} for r in rows],
        "time_trials_5_10_s": mean([r[1] for r in early]), "time_last_5_s": mean([r[1] for r in late]),
        "rss_trials_5_10_mib": mean([r[2] for r in early]), "rss_last_5_mib": mean([r[2] for r in late]),
    }
    figures["time_ratio_last_vs_5_10"] = figures["time_last_5_s"] / figures["time_trials_5_10_s"]
    figures["rss_ratio_last_vs_5_10"] = figures["rss_last_5_mib"] / figures["rss_trials_5_10_mib"]
    print(f"per-trial time: {figures['time_trials_5_10_s']:.2f} s (trials 5-10) -> {figures['time_last_5_s']:.2f} s "
          f"(last 5), x{figures['time_ratio_last_vs_5_10']:.2f}")
    print(f"RSS: {figures['rss_trials_5_10_mib']:.0f} MiB -> {figures['rss_last_5_mib']:.0f} MiB, "
          f"x{figures['rss_ratio_last_vs_5_10']:.2f}")
    save(figures, args.out, "worker_leanness")


if __name__ == "__main__":
    main()
