"""Ray Tune's bookkeeping test on its own shape: N trials (10,000) whose `run_trial` sleeps 1 s, on
16 local workers, random search. Real `tunecluster up` with real chief and worker processes; the
trial is `instant_trial.py`'s `run_trial` (no TensorFlow, no model: the worker runs on the stand-in
for Keras). ideal = N x trial seconds / workers (625 s for 10,000 x 1 s on 16); overhead = wall /
ideal - 1, with the wall measured two ways:

- `up`: the whole `tunecluster up` (launcher, chief and workers starting, the search, the export
  and teardown), as Ray Tune's release test times its whole `tune.run`;
- span: the search itself, first trial started to last trial ended (results.json).

Ray Tune publishes 715 s for 10,000 trials of 1 s on 16 CPUs (625 s ideal: ~14 % overhead; its
release test requires < 800 s). That figure is published, not measured here: nothing is
alternated; `--repeat K` runs the same search K times and reports the median and spread.

Also recorded per run: trials completed, duplicated (a trial id twice, the same hyperparameters
twice, a training run again after its lease was taken back) and lost (asked for, not completed);
per worker its trial count, busy fraction of the span and the gaps between its trials (its last
trial's end to its next one's start, both inside one WorkDone); `split_ms`, each trial's time
beyond its sleep split at the worker's entry to and return from `run_trial` (hand-out -> call,
return -> the chief ending it, and how many WorkDone answers came 100 ms or more late); the
chief's CPU seconds and RSS (sampled from /proc every 0.2 s, the last sample before it exits) and
the workers' CPU; the load average before and after. docs/performance.md has the figures.

    python benchmarks/bookkeeping.py --out benchmarks/results/bookkeeping.json          # 10,000 trials (~11-15 min)
    python benchmarks/bookkeeping.py --quick --repeat 2 --out /tmp/bookkeeping.json     # 1,000 trials, twice
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

from _common import iso_to_epoch, machine, percentile, run_up, save, table  # noqa: E402
from overhead import _exit_breakdown  # noqa: E402

RAY_TUNE = {"source": "Ray Tune's scalability benchmarks page (docs, 'Bookkeeping overhead'); its release test is "
                      "release/tune_tests/scalability_tests/workloads/test_bookkeeping_overhead.py",
            "trials": 10_000, "trial_s": 1.0, "cpus": 16, "wall_s": 715.0, "ideal_s": 625.0,
            "overhead_pct": 14.4, "release_limit_s": 800.0}
QUICK_TRIALS = 1_000


class ProcessSampler:
    """`on_poll` for `run_up`: the last CPU seconds and the peak RSS of every role's process."""

    def __init__(self):
        self.cpu_s: dict[str, float] = {}
        self.rss_mib: dict[str, float] = {}
        self.hwm_mib: dict[str, float] = {}

    def __call__(self, roles: list) -> None:
        for role in roles:
            name, pid = role["name"], role.get("pid")
            if not pid:
                continue
            cpu = _cpu_s(pid)
            if cpu is not None:
                self.cpu_s[name] = cpu
            rss, hwm = _memory_mib(pid)
            if rss is not None:
                self.rss_mib[name] = max(self.rss_mib.get(name, 0.0), rss)
            if hwm is not None:
                self.hwm_mib[name] = hwm


def _cpu_s(pid: int):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _memory_mib(pid: int):
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line[:5]] = int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return values.get("VmRSS"), values.get("VmHWM")


def analyse(document: dict, trials: int, workers: int, trial_s: float) -> dict:
    """Completed / duplicated / lost trials, the span, and per worker its count, busy fraction
    and gaps, from a results document."""
    rows = document["trials"]
    done = [t for t in rows if t["status"] == "COMPLETED"]
    ids = [t["trial_id"] for t in rows]
    values = [json.dumps(t.get("all_hyperparameters") or t["hyperparameters"], sort_keys=True) for t in rows]
    first = min(iso_to_epoch(t["started"]) for t in done)
    last = max(iso_to_epoch(t["ended"]) for t in done)
    span = last - first
    by_worker: dict[str, list] = {}
    for t in done:
        by_worker.setdefault(t["worker"], []).append((iso_to_epoch(t["started"]), iso_to_epoch(t["ended"])))
    per_worker, gaps, leads, tails = {}, [], [], []
    for name, spans in sorted(by_worker.items()):
        spans.sort()
        own = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
        gaps += own
        busy = sum(end - start for start, end in spans)
        leads.append(spans[0][0] - first)
        tails.append(last - spans[-1][1])
        per_worker[name] = {"trials": len(spans), "busy_s": busy, "busy_fraction": busy / span if span else None,
                            "mean_gap_ms": 1000 * statistics.fmean(own) if own else None,
                            "start_after_first_s": spans[0][0] - first, "idle_after_last_s": last - spans[-1][1]}
    durations = [iso_to_epoch(t["ended"]) - iso_to_epoch(t["started"]) for t in done]
    busy_all = sum(durations)
    ideal = trials * trial_s / workers
    return {
        "trials_asked": trials, "completed": len(done),
        "duplicated": {"trial_ids": len(ids) - len(set(ids)), "hyperparameters": len(values) - len(set(values)),
                       "requeued_trainings": sum(t.get("requeues") or 0 for t in rows),
                       "extra_executions": sum(max(0, len(t.get("executions") or []) - 1) for t in rows)},
        "lost": trials - len({t["trial_id"] for t in done}),
        "not_completed": {s: sum(1 for t in rows if t["status"] == s) for s in {t["status"] for t in rows} - {"COMPLETED"}},
        "ideal_s": ideal, "span_s": span, "first_trial_start": first, "last_trial_end": last,
        "span_overhead_pct": 100.0 * (span / ideal - 1.0),
        # what each trial costs beyond its sleep, in worker time: (workers x span - N x sleep) / N
        "per_trial_overhead_ms": 1000 * (workers * span - len(done) * trial_s) / max(1, len(done)),
        "mean_trial_recorded_s": statistics.fmean(durations),
        "in_trial_overhead_ms": 1000 * (statistics.fmean(durations) - trial_s),  # started..ended beyond the sleep
        "gap_between_trials_ms": {"mean": 1000 * statistics.fmean(gaps) if gaps else None,
                                  "p50": 1000 * percentile(gaps, 50), "p99": 1000 * percentile(gaps, 99),
                                  "max": 1000 * max(gaps, default=float("nan")), "count": len(gaps)},
        "ramp_up_s": {"mean": statistics.fmean(leads), "max": max(leads)},  # a worker's first start after the first
        "ramp_down_s": {"mean": statistics.fmean(tails), "max": max(tails)},  # idle after its last trial
        "busy_fraction": busy_all / (workers * span) if span else None,
        "workers_with_trials": len(by_worker), "per_worker": per_worker,
    }


def split_by_trace(document: dict, trace: Path) -> dict:
    """Where a trial's time beyond its sleep goes, from the chief's hand-out and end (results.json,
    1 ms resolution) and the worker's entry to and return from `run_trial` (instant_trial.py's
    trace): hand-out -> run_trial called (the answer's way to the worker, its loop before the
    call), inside run_trial beyond the sleep, run_trial returned -> the chief ends the trial
    (the worker's loop after it, WorkDone's way to the chief, the chief's handling up to the end)."""
    calls = {}
    for path in trace.glob("*.txt"):
        for line in path.read_text().splitlines():
            x, entered, returned = line.split()
            calls[int(x)] = (float(entered), float(returned))
    before, inside, after = [], [], []
    for t in document["trials"]:
        call = calls.get(t["hyperparameters"].get("x"))
        if t["status"] != "COMPLETED" or call is None:
            continue
        before.append(call[0] - iso_to_epoch(t["started"]))
        inside.append(call[1] - call[0])
        after.append(iso_to_epoch(t["ended"]) - call[1])

    def ms(values):
        return {"mean": 1000 * statistics.fmean(values), "p50": 1000 * percentile(values, 50),
                "p99": 1000 * percentile(values, 99)} if values else None
    stalled = [v for v in after if v > 0.1]  # the chief answered WorkDone 100 ms or more late
    return {"trials": len(before), "handout_to_run_trial": ms(before), "run_trial": ms(inside),
            "run_trial_return_to_end": ms(after),
            "return_to_end_over_100ms": {"count": len(stalled), "total_s": sum(stalled),
                                         "max_ms": 1000 * max(stalled, default=0.0)}}


def one_run(args, work: Path) -> dict:
    from tunecluster.tuning.examples import csv_path

    work.mkdir(parents=True)
    spec = {"name": "bookkeeping", "run_trial": f"{HERE / 'instant_trial.py'}:run_trial",
            "data": {"csv": str(csv_path()), "target": "Outcome"},
            "tuner": {"kind": "random", "max_trials": args.trials, "seed": 1},
            "fit": {"epochs": 1, "tensorboard": False}, "cluster": {"workers": args.workers}}
    (work / "spec.yaml").write_text(json.dumps(spec))
    os.environ["INSTANT_TRIAL_SECONDS"] = str(args.trial_seconds)
    os.environ["INSTANT_TRIAL_TRACE"] = str(work / "trace")
    (work / "trace").mkdir()
    ideal = args.trials * args.trial_seconds / args.workers
    before = machine()
    print(f"load before: {' '.join(f'{v:.2f}' for v in before['loadavg'])}; {args.trials} trials x "
          f"{args.trial_seconds:g} s on {args.workers} workers (ideal {ideal:.1f} s)", flush=True)
    sampler = ProcessSampler()
    result = run_up(["-f", "spec.yaml"], work / "run", work, timeout=max(1800.0, 4 * ideal), on_poll=sampler)
    figures = analyse(result["document"], args.trials, args.workers, args.trial_seconds)
    figures["split_ms"] = split_by_trace(result["document"], work / "trace")
    worker_cpu = sum(v for k, v in sampler.cpu_s.items() if k.startswith("worker"))
    figures.update({
        "machine_before": before, "machine_after": machine(),
        "up_wall_s": result["wall_s"], "up_overhead_pct": 100.0 * (result["wall_s"] / ideal - 1.0),
        "up_to_first_trial_s": figures["first_trial_start"] - result["started_at"],
        "up_exit_after_last_trial_s": result["ended_at"] - figures["last_trial_end"],
        **_exit_breakdown(work / "run", figures["last_trial_end"]),
        "chief_cpu_s": sampler.cpu_s.get("chief"),
        "chief_cpu_ms_per_trial": 1000 * sampler.cpu_s.get("chief", 0.0) / max(1, figures["completed"]),
        "chief_peak_rss_mib": sampler.hwm_mib.get("chief") or sampler.rss_mib.get("chief"),
        "workers_cpu_s": worker_cpu,
        "worker_cpu_ms_per_trial": 1000 * worker_cpu / max(1, figures["completed"]),
        "worker_peak_rss_mib": {k: v for k, v in sampler.hwm_mib.items() if k.startswith("worker")},
        "run_dir": str(work / "run"),
    })
    for key in ("first_trial_start", "last_trial_end"):
        figures.pop(key)
    print(f"  up {figures['up_wall_s']:.1f} s ({figures['up_overhead_pct']:+.2f} %), span {figures['span_s']:.1f} s "
          f"({figures['span_overhead_pct']:+.2f} %); {figures['completed']} completed, {figures['lost']} lost; "
          f"gap p50 {figures['gap_between_trials_ms']['p50']:.1f} ms; chief CPU {figures['chief_cpu_s']:.1f} s; "
          f"load after: {' '.join(f'{v:.2f}' for v in figures['machine_after']['loadavg'])}", flush=True)
    return figures


def summary(runs: list[dict]) -> dict:
    """Median, min and max over the runs of the headline figures."""
    def spread(key):
        values = [r[key] for r in runs if r.get(key) is not None]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None
    return {key: spread(key) for key in ("up_wall_s", "up_overhead_pct", "span_s", "span_overhead_pct",
                                         "per_trial_overhead_ms", "in_trial_overhead_ms", "busy_fraction",
                                         "chief_cpu_s", "chief_peak_rss_mib", "up_to_first_trial_s",
                                         "up_exit_after_last_trial_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--trial-seconds", type=float, default=1.0, help="each run_trial's sleep")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRIALS:,} trials (overrides --trials)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the same search (median and spread)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.trials = QUICK_TRIALS
    if args.trials < 1 or args.workers < 1 or args.trial_seconds <= 0 or args.repeat < 1:
        parser.exit(2, "bookkeeping.py: --trials, --workers and --repeat must be at least 1 and "
                       "--trial-seconds above 0\n")
    work = Path(tempfile.mkdtemp(prefix="tunecluster-bookkeeping-"))
    runs = [one_run(args, work / f"run-{i}") for i in range(args.repeat)]
    print()
    table(["run", "load before", "up s", "up overhead %", "span s", "span overhead %", "per trial ms",
           "gap p50 ms", "gap p99 ms", "busy", "done", "dup", "lost", "chief CPU s", "chief RSS MiB"],
          [[i, r["machine_before"]["loadavg"][0], r["up_wall_s"], r["up_overhead_pct"], r["span_s"],
            r["span_overhead_pct"], r["per_trial_overhead_ms"], r["gap_between_trials_ms"]["p50"],
            r["gap_between_trials_ms"]["p99"], r["busy_fraction"], r["completed"],
            sum(r["duplicated"].values()), r["lost"], r["chief_cpu_s"], r["chief_peak_rss_mib"]]
           for i, r in enumerate(runs)])
    figures = {"benchmark": "bookkeeping", "trials": args.trials, "workers": args.workers,
               "trial_s": args.trial_seconds, "ideal_s": args.trials * args.trial_seconds / args.workers,
               "repeat": args.repeat, "ray_tune_published": RAY_TUNE, "summary": summary(runs), "runs": runs}
    shape = (args.trials, args.workers, args.trial_seconds)
    name = {(10_000, 16, 1.0): "bookkeeping", (QUICK_TRIALS, 16, 1.0): "bookkeeping-quick"}.get(
        shape, f"bookkeeping-{args.trials}x{args.trial_seconds:g}s-{args.workers}w")
    save(figures, args.out, name)


if __name__ == "__main__":
    main()
