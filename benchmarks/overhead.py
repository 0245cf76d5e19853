"""Orchestration overhead: N trials whose fit takes a fixed 0.5 s (`sleep_model.py`) on 2 local
workers. ideal = N x 0.5 s / workers; overhead = wall / ideal - 1, with wall the search's span
(first trial started to last trial ended, from results.json). Also the end-to-end time of `up`
and how long after the last trial's end `up` returned (chief exit, export, teardown).

    python benchmarks/overhead.py --out benchmarks/results/overhead.json          # 200 trials
    python benchmarks/overhead.py --trials 20 --out /tmp/overhead-quick.json      # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import iso_to_epoch, machine, run_up, save, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.5, help="fit time per trial")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from tunecluster.tuning.examples import csv_path

    work = Path(tempfile.mkdtemp(prefix="tunecluster-overhead-"))
    spec = {"name": "overhead", "hypermodel": f"{HERE / 'sleep_model.py'}:build",
            "data": {"csv": str(csv_path()), "target": "Outcome"},
            "tuner": {"kind": "random", "max_trials": args.trials, "seed": 1},
            "fit": {"epochs": 1, "tensorboard": False}, "cluster": {"workers": args.workers}}
    (work / "spec.yaml").write_text(json.dumps(spec))
    os.environ["SLEEP_MODEL_SECONDS"] = str(args.seconds)
    before = machine()
    result = run_up(["-f", "spec.yaml"], work / "run", work)
    trials = [t for t in result["document"]["trials"] if t["status"] == "COMPLETED"]
    first = min(iso_to_epoch(t["started"]) for t in trials)
    last = max(iso_to_epoch(t["ended"]) for t in trials)
    span = last - first
    ideal = len(trials) * args.seconds / args.workers
    per_trial = [t["duration_s"] for t in trials if t.get("duration_s")]
    by_worker: dict[str, list] = {}
    for t in trials:
        by_worker.setdefault(t["worker"], []).append((iso_to_epoch(t["started"]), iso_to_epoch(t["ended"])))
    gaps = []
    for spans in by_worker.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    figures = {
        "benchmark": "overhead", "machine_before": before, "machine_after": machine(),
        "trials": len(trials), "workers": args.workers, "fit_s": args.seconds,
        "ideal_s": ideal, "search_span_s": span, "overhead_pct": 100.0 * (span / ideal - 1.0),
        "up_wall_s": result["wall_s"], "up_to_first_trial_s": first - result["started_at"],
        "exit_after_last_trial_s": result["ended_at"] - last,
        "mean_trial_s_as_recorded": sum(per_trial) / len(per_trial),
        "mean_gap_between_trials_ms": 1000 * sum(gaps) / max(1, len(gaps)),
        "peak_worker_rss_mib": result["peak_rss_mib"],
    }
    table(["trials", "workers", "ideal s", "span s", "overhead %", "gap ms", "up s", "exit after last s"],
          [[len(trials), args.workers, ideal, span, figures["overhead_pct"], figures["mean_gap_between_trials_ms"],
            result["wall_s"], figures["exit_after_last_trial_s"]]])
    save(figures, args.out, "overhead" if args.trials == 200 else f"overhead-{args.trials}")


if __name__ == "__main__":
    main()
