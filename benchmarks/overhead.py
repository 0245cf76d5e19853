"""Orchestration overhead: N trials whose fit takes a fixed 0.5 s (`sleep_model.py`) on 2 local
workers. ideal = N x 0.5 s / workers; overhead = wall / ideal - 1, with wall the search's span
(first trial started to last trial ended, from results.json). Also the end-to-end time of `up`
and how long after the last trial's end `up` returned (chief exit, export, teardown).

The overhead is split in two from the workers' own timings of each training (results.json,
`executions[].timing`): `in_training_ms`, what Keras costs per trial around the 0.5 s `fit`
(clear_session + build + compile, the prediction check, the weights file), and
`orchestration_overhead_pct`, the span against the trainings' busy time alone (span / (sum of
training durations / workers) - 1): what the cluster adds between and around trainings (RPCs,
waiting for work, bookkeeping, the ramp at the start and end).

    python benchmarks/overhead.py --out benchmarks/results/overhead.json          # 200 trials
    python benchmarks/overhead.py --trials 20 --out /tmp/overhead-quick.json      # a quick look
    python benchmarks/overhead.py --seconds 0 --out /tmp/no-training.json          # trials/s, no training

With `--seconds 0` the fit takes no time: `trials_per_s` is then what 2 workers and the chief
sustain with nothing but Keras' per-model cost and the cluster's own.
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


def _log_time(path: Path, needle: str):
    """The epoch time of the last line of a role's log containing `needle` (None if absent)."""
    import time as _time

    try:
        lines = [line for line in path.read_text().splitlines() if needle in line]
    except OSError:
        return None
    if not lines:
        return None
    stamp = lines[-1][:23]  # "2026-11-29 05:25:24,760"
    return _time.mktime(_time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:23]) / 1000.0


def _exit_breakdown(run: Path, last: float) -> dict:
    """From the roles' logs: the export's end and the chief's exit, relative to the last trial's end."""
    exported = max((t for t in (_log_time(p, "exported trial") for p in (run / "logs").glob("worker-*.log")) if t),
                   default=None)
    chief_done = _log_time(run / "logs" / "chief.log", "search complete")
    return {"export_done_after_last_trial_s": exported - last if exported else None,
            "chief_exit_after_last_trial_s": chief_done - last if chief_done else None,
            "chief_exit_after_export_s": chief_done - exported if chief_done and exported else None}


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
    executions = [e for t in trials for e in t.get("executions") or [] if e.get("timing")]
    phases = {name: 1000 * sum(e["timing"][name] for e in executions) / max(1, len(executions))
              for name in ("build_s", "fit_s", "check_s", "save_s")}
    busy = sum(e["duration_s"] for e in executions)
    in_training_ms = 1000 * busy / max(1, len(executions)) - phases["fit_s"]
    figures = {
        "benchmark": "overhead", "machine_before": before, "machine_after": machine(),
        "trials": len(trials), "workers": args.workers, "fit_s": args.seconds,
        "ideal_s": ideal, "search_span_s": span,
        "overhead_pct": 100.0 * (span / ideal - 1.0) if ideal else None,  # --seconds 0: no ideal
        "trials_per_s": len(trials) / span if span else None,
        "up_wall_s": result["wall_s"], "up_to_first_trial_s": first - result["started_at"],
        "exit_after_last_trial_s": result["ended_at"] - last,
        **_exit_breakdown(work / "run", last),
        "mean_trial_s_as_recorded": sum(per_trial) / len(per_trial),
        "mean_gap_between_trials_ms": 1000 * sum(gaps) / max(1, len(gaps)),
        "in_training_ms": in_training_ms,
        "in_training_phases_ms": {k[:-2]: v for k, v in phases.items()},
        "orchestration_overhead_pct": (100.0 * (span / (busy / args.workers) - 1.0)) if busy else None,
        "peak_worker_rss_mib": result["peak_rss_mib"],
    }
    table(["trials", "workers", "ideal s", "span s", "overhead %", "trials/s", "gap ms", "mean trial s", "up s",
           "exit after last s", "chief exit after export s"],
          [[len(trials), args.workers, ideal, span, figures["overhead_pct"], figures["trials_per_s"],
            figures["mean_gap_between_trials_ms"],
            figures["mean_trial_s_as_recorded"], result["wall_s"], figures["exit_after_last_trial_s"],
            figures["chief_exit_after_export_s"]]])
    print(f"per training, around fit: {in_training_ms:.1f} ms (build {phases['build_s']:.1f}, "
          f"check {phases['check_s']:.1f}, save {phases['save_s']:.1f}; fit itself {phases['fit_s']:.1f}); "
          f"orchestration alone: {figures['orchestration_overhead_pct']:.2f}%")
    name = "overhead" if args.trials == 200 else f"overhead-{args.trials}"
    save(figures, args.out, name if args.seconds == 0.5 else f"{name}-fit{args.seconds:g}s")


if __name__ == "__main__":
    main()
