"""Orchestration overhead, Ray Tune's bookkeeping test scaled to this machine: N trials (200) whose
training takes a fixed 0.5 s, on 2 local workers; ideal = N x 0.5 s / workers; overhead = wall /
ideal - 1, with wall the search's span (first trial started to last trial ended, from
results.json). Two trainers, side by side in one run:

- `keras`: the sleep-based hypermodel (`sleep_model.py`): a real one-layer Keras model is built,
  compiled, checked and (when it can rank, `fit.checkpoints`) saved per trial; its `fit` sleeps.
- `run_trial`: a `run_trial` function that sleeps (`instant_trial.py`): no model at all, like
  Ray Tune's test (its trials are functions that sleep).

- `keras_epochs`: the same fit time split into `--epochs` (10) epochs of `epoch_sleep_model.py`,
  each epoch's metrics reported to the chief on the heartbeats (what median stopping and ASHA
  need): its overhead minus `keras`'s is the chief's cost of the per-epoch reports.

With `--repeats N` the trainers alternate N times and the table gives each one's median and
spread, and the median of the per-repeat differences `keras_epochs - keras`.

For each: the end-to-end time of `up`, how long after the last trial's end `up` returned (chief
exit, export, teardown), and the overhead split from the workers' own timings of each training
(results.json, `executions[].timing`): `in_training_ms` around the sleep (for `keras`: the
hypermodel's own build and compile, the rest of Keras Tuner's build (clear_session, seeds), the
prediction check, the weights file); `tunecluster_overhead_pct`, the span against the ideal with
the hypermodel's own build counted as training (what tunecluster adds, Keras' model-building in
the user's code aside); `orchestration_overhead_pct`, the span against the trainings' busy time
(RPCs, waiting for work, bookkeeping, the ramp at the start and end).

    python benchmarks/overhead.py --out benchmarks/results/overhead.json          # 200 trials each
    python benchmarks/overhead.py --trials 20 --out /tmp/overhead-quick.json      # a quick look
    python benchmarks/overhead.py --seconds 0 --trainers keras                    # trials/s, no training
    python benchmarks/overhead.py --trainers keras,keras_epochs --repeats 3 --out benchmarks/results/epoch_reports_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def measure(trainer: str, args, work: Path) -> dict:
    from tunecluster.tuning.examples import csv_path

    work.mkdir(parents=True)
    code = {"keras": {"hypermodel": f"{HERE / 'sleep_model.py'}:build"},
            "keras_epochs": {"hypermodel": f"{HERE / 'epoch_sleep_model.py'}:build"},
            "run_trial": {"run_trial": f"{HERE / 'instant_trial.py'}:run_trial"}}[trainer]
    epochs = args.epochs if trainer == "keras_epochs" else 1
    spec = {"name": "overhead", **code, "data": {"csv": str(csv_path()), "target": "Outcome"},
            "tuner": {"kind": "random", "max_trials": args.trials, "seed": 1},
            "fit": {"epochs": epochs, "tensorboard": False}, "cluster": {"workers": args.workers}}
    (work / "spec.yaml").write_text(json.dumps(spec))
    os.environ["SLEEP_MODEL_SECONDS"] = os.environ["INSTANT_TRIAL_SECONDS"] = str(args.seconds)
    os.environ["EPOCH_SLEEP_SECONDS"] = str(args.seconds / args.epochs)
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
    phases = {name: 1000 * sum(e["timing"].get(name, 0.0) for e in executions) / max(1, len(executions))
              for name in ("build_s", "hypermodel_s", "fit_s", "check_s", "save_s")}
    busy = sum(e["duration_s"] for e in executions)
    in_training_ms = 1000 * busy / max(1, len(executions)) - phases["fit_s"]
    saved = sum(1 for e in executions if e.get("saved_weights"))
    user_ideal = ideal + len(trials) * phases["hypermodel_s"] / 1000 / args.workers
    return {
        "trainer": trainer, "epochs": epochs, "machine_before": before, "machine_after": machine(),
        "trials": len(trials), "workers": args.workers, "fit_s": args.seconds,
        "ideal_s": ideal, "search_span_s": span,
        "overhead_pct": 100.0 * (span / ideal - 1.0) if ideal else None,  # --seconds 0: no ideal
        "tunecluster_overhead_pct": 100.0 * (span / user_ideal - 1.0) if user_ideal else None,
        "trials_per_s": len(trials) / span if span else None,
        "up_wall_s": result["wall_s"], "up_to_first_trial_s": first - result["started_at"],
        "exit_after_last_trial_s": result["ended_at"] - last,
        **_exit_breakdown(work / "run", last),
        "mean_trial_s_as_recorded": sum(per_trial) / len(per_trial),
        "mean_gap_between_trials_ms": 1000 * sum(gaps) / max(1, len(gaps)),
        "in_training_ms": in_training_ms,
        "in_training_phases_ms": {k[:-2]: v for k, v in phases.items()},
        "weights_files_written": saved,
        "orchestration_overhead_pct": (100.0 * (span / (busy / args.workers) - 1.0)) if busy else None,
        "peak_worker_rss_mib": result["peak_rss_mib"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.5, help="training time per trial (a sleep)")
    parser.add_argument("--trainers", default="keras,run_trial", help="keras, keras_epochs, run_trial, comma separated")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per training of keras_epochs")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the trainers this many times")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunecluster-overhead-"))
    trainers = args.trainers.split(",")
    rows = [measure(trainer, args, work / f"{trainer}-{repeat}")
            for repeat in range(args.repeats) for trainer in trainers]
    table(["trainer", "trials", "workers", "ideal s", "span s", "overhead %", "tunecluster's %", "trials/s",
           "gap ms", "up s", "exit after last s"],
          [[r["trainer"], r["trials"], r["workers"], r["ideal_s"], r["search_span_s"], r["overhead_pct"],
            r["tunecluster_overhead_pct"], r["trials_per_s"], r["mean_gap_between_trials_ms"], r["up_wall_s"],
            r["exit_after_last_trial_s"]] for r in rows])
    for r in rows:
        p = r["in_training_phases_ms"]
        print(f"{r['trainer']}: per training around the sleep {r['in_training_ms']:.1f} ms (build {p['build']:.1f}, "
              f"of it the hypermodel's own {p['hypermodel']:.1f}; check {p['check']:.1f}, save {p['save']:.1f}; "
              f"{r['weights_files_written']} weights files); orchestration alone: "
              f"{r['orchestration_overhead_pct']:.2f}%")
    medians = {}
    if args.repeats > 1:
        for trainer in trainers:
            values = [r["overhead_pct"] for r in rows if r["trainer"] == trainer]
            medians[trainer] = {"median_overhead_pct": statistics.median(values),
                                "min": min(values), "max": max(values)}
            print(f"{trainer}: overhead median {statistics.median(values):.2f} % "
                  f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)")
        if "keras" in trainers and "keras_epochs" in trainers:
            pairs = [(a["overhead_pct"], b["overhead_pct"]) for a, b in
                     zip([r for r in rows if r["trainer"] == "keras"], [r for r in rows if r["trainer"] == "keras_epochs"])]
            differences = [b - a for a, b in pairs]
            medians["epoch_reports_pp"] = {"median": statistics.median(differences), "runs": differences}
            print(f"per-epoch reports ({args.epochs} per training): keras_epochs - keras = "
                  f"{statistics.median(differences):+.2f} percentage points (median of {len(differences)} pairs)")
    figures = {"benchmark": "overhead", "command": " ".join(sys.argv), "rows": rows, "medians": medians,
               **{k: v for k, v in rows[0].items() if k != "trainer"}, "trainer": rows[0]["trainer"]}
    for r in rows[1:]:
        figures[f"overhead_pct_{r['trainer']}"] = r["overhead_pct"]
    name = "overhead" if args.trials == 200 else f"overhead-{args.trials}"
    save(figures, args.out, name if args.seconds == 0.5 else f"{name}-fit{args.seconds:g}s")


if __name__ == "__main__":
    main()
