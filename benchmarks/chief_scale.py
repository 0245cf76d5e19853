"""How many workers can one chief serve? The real chief against N simulated workers.

The workers are the Go load generator of `benchmarks/loadgen/` (one goroutine per worker, one gRPC
connection each, a few microseconds of CPU per call, so the figures measure the chief, not the
clients): tunecluster's real worker protocol with the token (NextWork / WorkDone with `next`,
heartbeats every `--heartbeat` s or the interval the chief's answers give, optional epoch
reports), training simulated by a sleep of `--trial-seconds` (+-10 %). For each oracle (random,
Bayesian, Hyperband over the 32 hyperparameters of the comprehensive Pima space) and trial length,
a fresh chief (`python -m tunecluster chief`, token on, confirmation off) serves each level of
workers (100, 300, 1,000, 3,000, 10,000) for `--duration` s; latencies and busy time count from
`--warmup` s on; at the end every simulated training is cut short and reported, so every trial
handed out must be COMPLETED in results.json exactly once.

Recorded per run: p50/p99/max latency per RPC type, busy fraction of the workers (simulated
training time / window) and the number of workers that ran any trial, trials started/finished
(lost: trained or reported by a worker but neither COMPLETED in results.json nor still RUNNING
there; duplicated: a result taken twice, a trial listed twice, or a unit trained by two workers
other than after a lease the chief took back; a retry after a lost answer, same worker, is not
one), the chief's CPU over the window (from /proc/<pid>/stat, with its child processes such as
the Bayesian oracle's model process: cores, and ms per call of all types together; by type from
a py-spy profile of the chief's GIL holder, `--py-spy`: `chief_profile.py`), its peak RSS, the
run folder's state files (sizes), and the load generator's own CPU (cores, ms per call). The
ceiling of a series is its first level with a p99 over 200 ms, an RPC error, or a trial lost or
duplicated (with `--repeats k`, each level runs k times with the systems alternating, and the
median p99 decides; `medians` in the JSON gives each figure's median and spread); higher levels
of that series are skipped (`--past-ceiling` runs them). Stock Keras
Tuner's chief (`oracle_chief.start_server`, its own single-threaded gRPC server) runs the same
levels with Keras Tuner's worker sequence (CreateTrial, GetTrial, UpdateTrial, EndTrial; an IDLE
answer is asked again at once, as Keras Tuner does) until its ceiling.

Build the load generator once (Go from https://go.dev, modules from the Go module proxy):

    cd benchmarks/loadgen && GOFLAGS=-mod=mod go build -o loadgen .

then, e.g. (the full grid takes hours; choose a subset):

    python benchmarks/chief_scale.py --oracles random --levels 100,300,1000 --trial-seconds 10 \\
        --stock-levels 100,300 --out benchmarks/results/chief_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import chief_profile  # noqa: E402
from _common import comprehensive_space, machine, rss_mib, save, table  # noqa: E402

LOADGEN_DIR = HERE / "loadgen"
LOADGEN = LOADGEN_DIR / "loadgen"
GO = os.environ.get("GO", "/usr/local/go/bin/go")
CEILING_P99_MS = 200.0
TOKEN = "chief-scale-token"
SPEC_MAX_WORKERS = 256  # tuning/spec.py: cluster.workers <= 256

KT_CHIEF = textwrap.dedent("""
    import sys
    sys.path.insert(0, %(bench)r)
    from tunecluster.kt_compat import keras_stub
    keras_stub.install()
    import keras_tuner as kt
    from keras_tuner.src.distribute import oracle_chief
    from _common import comprehensive_space
    from tunecluster.tuning.oracles import build_oracle
    from tunecluster.tuning.spec import TunerSpec
    oracle = build_oracle(TunerSpec(**%(tuner)r))
    oracle._set_project_dir(%(dir)r, "kt")
    oracle.verbose = 0
    oracle.update_space(comprehensive_space())
    oracle_chief.start_server(oracle)
""")


def build_loadgen() -> Path:
    """The load generator's binary, built when missing or older than its sources (one `go build`,
    modules from the proxy)."""
    sources = [*LOADGEN_DIR.glob("*.go"), LOADGEN_DIR / "go.mod"]
    if LOADGEN.exists() and all(p.stat().st_mtime <= LOADGEN.stat().st_mtime for p in sources if p.exists()):
        return LOADGEN
    if not Path(GO).exists() and not shutil.which("go"):
        raise SystemExit(f"chief_scale: Go is not installed (looked for {GO}); install Go or build "
                         "benchmarks/loadgen elsewhere: cd benchmarks/loadgen && GOFLAGS=-mod=mod go build -o loadgen .")
    go = GO if Path(GO).exists() else shutil.which("go")
    subprocess.run([go, "build", "-o", "loadgen", "."], cwd=LOADGEN_DIR, check=True,
                   env={**os.environ, "GOFLAGS": "-mod=mod"})
    return LOADGEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(process: subprocess.Popen, port: int, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the chief exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the chief did not listen within {timeout:.0f} s: {log.read_text()[-2000:]}")


def tuner_section(oracle: str, hyperband_max_epochs: int) -> dict:
    tuner = {"kind": oracle, "max_trials": 10**7}
    if oracle == "hyperband":
        tuner["hyperband"] = {"max_epochs": hyperband_max_epochs, "factor": 3, "hyperband_iterations": 10**4}
    return tuner


def start_chief(system: str, oracle: str, workers: int, folder: Path, port: int, args) -> subprocess.Popen:
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
           "KERASTUNER_TUNER_ID": "chief", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(args.chief_pythonpath or HERE.parent), os.environ.get("PYTHONPATH", "")])}
    tuner = tuner_section(oracle, args.hyperband_max_epochs)
    log = folder / "chief.log"
    if system == "keras_tuner":
        script = folder / "kt_chief.py"
        script.write_text(KT_CHIEF % {"bench": str(HERE), "dir": str(folder / "run"), "tuner": tuner})
        command = [sys.executable, str(script)]
    else:
        spec = folder / "spec.yaml"
        spec.write_text(json.dumps({
            "name": "scale", "tuner": tuner, "confirm": {"enabled": False},
            # cluster.workers sizes the chief's thread pool (2 x workers + 4); the spec allows 256 at most
            "cluster": {"workers": min(workers, SPEC_MAX_WORKERS), "heartbeat_interval": args.heartbeat,
                        "lease_timeout": max(30.0, 3 * args.heartbeat)}}))
        env.update({"TUNECLUSTER_SPEC": str(spec), "TUNECLUSTER_RUN_DIR": str(folder / "run"),
                    "TUNECLUSTER_TOKEN": TOKEN})
        command = [sys.executable, "-m", "tunecluster", "chief"]
    (folder / "run").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(command, env=env, cwd=str(folder), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_listening(process, port, log)
    except RuntimeError:
        process.kill()
        raise
    return process


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds of a process and its descendants (the Bayesian oracle fits its model in a child
    process of the chief)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if pid not in cpu:
        return None
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        total += cpu.get(current, 0.0)
        frontier.extend(child for child, parent in parents.items() if parent == current)
    return total


class Sampler(threading.Thread):
    """The chief's CPU seconds (with its child processes) and RSS every half second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float | None, float | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.time(), tree_cpu_s(self.pid), rss_mib(self.pid)))
            self.done.wait(0.5)

    def cpu_between(self, start: float, end: float) -> float | None:
        inside = [(t, c) for t, c, _ in self.samples if c is not None and start <= t <= end]
        if len(inside) < 2:
            return None
        return inside[-1][1] - inside[0][1], inside[-1][0] - inside[0][0]

    def peak_rss(self) -> float | None:
        values = [r for _, _, r in self.samples if r]
        return max(values) if values else None


def state_files(run: Path) -> dict:
    """Sizes (bytes) of the state the chief keeps in its run folder."""
    sizes = {name: (run / name).stat().st_size for name in ("results.json", "progress.json", "work.json", "results.csv")
             if (run / name).exists()}
    files = [p for p in run.rglob("*") if p.is_file()]
    sizes["total"] = sum(p.stat().st_size for p in files)
    sizes["files"] = len(files)
    oracle = list(run.rglob("oracle.json"))
    if oracle:
        sizes["oracle.json"] = oracle[0].stat().st_size
    return sizes


def completed_trials(system: str, run: Path) -> tuple[dict, int]:
    """{trial_id: status} as the chief recorded them; and how many trial ids appear twice."""
    if system == "tunecluster":
        document = json.loads((run / "results.json").read_text())
        ids = [t["trial_id"] for t in document["trials"]]
        return {t["trial_id"]: t["status"] for t in document["trials"]}, len(ids) - len(set(ids))
    statuses = {}
    for path in run.rglob("trial.json"):
        state = json.loads(path.read_text())
        statuses[state["trial_id"]] = state.get("status")
    return statuses, 0


def measure(system: str, oracle: str, workers: int, trial_s: float, args, base: Path, space_file: Path) -> dict:
    folder = base / f"{system}-{oracle}-{int(trial_s)}s-{workers}"
    folder.mkdir(parents=True)
    load_before = list(os.getloadavg())
    port = free_port()
    duration = args.duration or max(60.0, 4 * trial_s)
    ramp = min(30.0, max(2.0, workers / 200))
    warmup = args.warmup if args.warmup is not None else min(duration / 2, trial_s + ramp)
    chief = start_chief(system, oracle, workers, folder, port, args)
    sampler = Sampler(chief.pid)
    sampler.start()
    command = [str(LOADGEN), "-addr", f"127.0.0.1:{port}", "-mode", system, "-workers", str(workers),
               "-trial-seconds", str(trial_s), "-duration", str(duration), "-warmup", str(warmup),
               "-ramp", str(ramp), "-heartbeat", str(args.heartbeat), "-epochs", str(args.epochs),
               "-list-keys", "-out", str(folder / "loadgen.json")]
    if system == "tunecluster":
        command += ["-token", TOKEN, "-space", str(space_file)]
    started = time.time()
    profiler = None
    if args.py_spy:
        profile = folder / "profile.txt"

        def start_profiler() -> None:
            nonlocal profiler
            profiler = subprocess.Popen([args.py_spy, "record", "--pid", str(chief.pid), "--rate", "50", "--nonblocking", "--gil",
                                         "--duration", str(int(duration - warmup)), "--format", "raw", "-o", str(profile)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        threading.Timer(warmup, start_profiler).start()
    row = {"system": system, "oracle": oracle, "workers": workers, "trial_seconds": trial_s, "duration_s": duration,
           "warmup_s": warmup, "load_before": load_before}
    try:
        generator = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=(folder / "loadgen.log").open("wb"),
                                   timeout=duration + 600)
        if generator.returncode != 0:
            raise RuntimeError(f"loadgen failed ({generator.returncode}): "
                               f"{(folder / 'loadgen.log').read_text()[-2000:]}")
        time.sleep(3.0)  # the state writer's next write
        sampler.done.set()
        sampler.join()
        result = json.loads((folder / "loadgen.json").read_text())
        window = (started + warmup, started + duration)
        cpu = sampler.cpu_between(*window)
        measured_calls = sum(r.get("measured", 0) for r in result["rpc"].values())
        row["alive"] = chief.poll() is None
    finally:
        sampler.done.set()
        if chief.poll() is None:
            chief.send_signal(signal.SIGTERM)
            try:
                chief.wait(30)
            except subprocess.TimeoutExpired:
                chief.kill()
                chief.wait()
    if profiler is not None:
        profiler.wait(60)
        row["profile"] = chief_profile.summary(folder / "profile.txt")
    run = folder / "run"
    statuses, listed_twice = completed_trials(system, run)
    trial_of = (lambda key: key.split("#")[0]) if system == "tunecluster" else (lambda key: key)
    # lost: a trial some worker trained (or reported) that the chief neither COMPLETED nor still
    # holds as RUNNING (a unit whose result never got through goes back to the queue after its lease)
    trained = {trial_of(k) for k in result.get("started_keys", []) + result.get("finished_keys", [])}
    lost = sorted(t for t in trained if statuses.get(t) not in ("COMPLETED", "RUNNING"))
    unfinished_at_end = sum(1 for t in trained if statuses.get(t) == "RUNNING")
    t = result["trials"]
    # duplicated: a result taken twice, a trial listed twice, or a unit trained by two workers
    # other than after a lease the chief took back (revoked by a heartbeat, or a refused result)
    duplicated = t["finished_twice"] + listed_twice + max(0, t["started_twice"] - t["revoked"] - t["refused"])
    rpc = {name: {k: v for k, v in r.items()} for name, r in result["rpc"].items()}
    p99 = max((r.get("p99_ms", 0.0) for r in rpc.values()), default=0.0)
    # calls started after the load's end fail while the chief stops (heartbeats answered CANCELLED
    # by a server shutting down): counted apart, they say nothing about the load
    after_stop = sum(r.get("errors_after_stop", 0) for r in rpc.values())
    errors = sum(r.get("errors", 0) for r in rpc.values()) - after_stop
    row.update({
        "rpc": rpc, "p99_ms_max": p99, "rpc_errors": errors, "rpc_errors_after_stop": after_stop,
        "busy_fraction": result["busy_fraction"], "workers_that_ran_trials": result["workers_that_ran_trials"],
        "per_worker": result["per_worker"], "trials": t,
        "completed_in_results": sum(1 for s in statuses.values() if s == "COMPLETED"),
        "running_in_results": sum(1 for s in statuses.values() if s == "RUNNING"),
        "lost": len(lost), "lost_ids": lost[:20], "duplicated": duplicated, "trained_unfinished_at_end": unfinished_at_end,
        "chief_cores": (cpu[0] / cpu[1]) if cpu else None,
        "chief_cpu_ms_per_call": (1000 * cpu[0] * (window[1] - window[0]) / cpu[1] / measured_calls)
        if cpu and measured_calls else None,
        "calls_per_s": measured_calls / (window[1] - window[0]),
        "chief_peak_rss_mib": sampler.peak_rss(), "state_files": state_files(run),
        "loadgen_cores": result["loadgen_cores"], "loadgen_cpu_ms_per_call": result["loadgen_cpu_ms_per_call"],
        "heartbeat_s_adopted": result.get("heartbeat_s_adopted"),
    })
    if profiler is not None and cpu:
        calls = {name: r.get("measured", 0) for name, r in rpc.items()}
        row["cpu_by_rpc"] = chief_profile.cpu_by_rpc(folder / "profile.txt", calls, cpu[0] * (window[1] - window[0]) / cpu[1])
    row["within_ceiling"] = p99 <= CEILING_P99_MS and not errors and not lost and not duplicated and row["alive"]
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return row


def median(values: list) -> float:
    ordered = sorted(v for v in values if v is not None)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def summarize_repeats(runs: list[dict]) -> list[dict]:
    """Per system, oracle, trial length and level: the median of its repeats and their spread."""
    groups: dict[tuple, list] = {}
    for row in runs:
        groups.setdefault((row["system"], row["oracle"], row["trial_seconds"], row["workers"]), []).append(row)
    out = []
    for (system, oracle, trial_s, workers), rows in groups.items():
        summary = {"system": system, "oracle": oracle, "trial_seconds": trial_s, "workers": workers, "runs": len(rows),
                   "load_before": [r.get("load_before", [None])[0] for r in rows],
                   "lost": sum(r.get("lost") or 0 for r in rows), "duplicated": sum(r.get("duplicated") or 0 for r in rows),
                   "errors": [r["error"] for r in rows if r.get("error")]}
        for key in ("p99_ms_max", "busy_fraction", "chief_cores", "chief_cpu_ms_per_call", "chief_peak_rss_mib",
                    "loadgen_cores", "loadgen_cpu_ms_per_call"):
            values = [r.get(key) for r in rows if r.get(key) is not None]
            summary[key] = median(values) if values else None
            summary[key + "_spread"] = [min(values), max(values)] if values else None
        out.append(summary)
    return out


def chief_code(folder: Path | None) -> dict:
    """Which tunecluster the chief ran: the folder and, for this checkout, its commit."""
    if folder is not None:
        marker = Path(folder) / "COMMIT"
        return {"pythonpath": str(folder), "commit": marker.read_text().strip() if marker.exists() else None}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    return {"pythonpath": str(HERE.parent), "commit": commit or None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/chief_scale.json)")
    parser.add_argument("--oracles", default="random,bayesian,hyperband")
    parser.add_argument("--levels", default="100,300,1000,3000,10000", help="simulated workers, comma separated")
    parser.add_argument("--trial-seconds", default="10,60", help="simulated trial lengths, comma separated")
    parser.add_argument("--stock-levels", default=None,
                        help="levels for stock Keras Tuner's chief (default: --levels; 'none' skips it)")
    parser.add_argument("--stock-oracles", default="random", help="oracles for stock Keras Tuner's chief")
    parser.add_argument("--duration", type=float, default=0, help="seconds per run (default max(60, 4 x trial length))")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before measuring (default: trial length + the workers' ramp)")
    parser.add_argument("--heartbeat", type=float, default=2.0, help="workers' heartbeat interval (s)")
    parser.add_argument("--epochs", type=int, default=0, help="epoch reports per simulated trial")
    parser.add_argument("--hyperband-max-epochs", type=int, default=81)
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per level, the systems alternating; the median decides the ceiling (3 on a shared machine)")
    parser.add_argument("--past-ceiling", action="store_true", help="run the levels above a series' ceiling too")
    parser.add_argument("--py-spy", default=None, metavar="PATH",
                        help="profile the chief over each run's window with this py-spy binary (pip install py-spy)")
    parser.add_argument("--chief-pythonpath", type=Path, default=None, metavar="DIR",
                        help="run the chief from the tunecluster package under DIR (another version, e.g. "
                             "`git archive main tunecluster | tar -x -C DIR`); default this checkout")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    args = parser.parse_args()

    build_loadgen()
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    levels = ints(args.levels)
    stock_levels = [] if args.stock_levels == "none" else ints(args.stock_levels or args.levels)
    lengths = [float(x) for x in args.trial_seconds.split(",")]
    base = Path(tempfile.mkdtemp(prefix="chief-scale-"))
    space_file = base / "space.json"
    space_file.write_text(json.dumps(comprehensive_space().get_config()))
    series = [("tunecluster", o, levels) for o in args.oracles.split(",") if o] + \
             [("keras_tuner", o, stock_levels) for o in args.stock_oracles.split(",") if o and stock_levels]
    runs, ceilings = [], {}
    stopped: set[str] = set()  # series past their ceiling
    for trial_s in lengths:
        names = {(system, oracle): f"{system}/{oracle}/{trial_s:g}s" for system, oracle, _ in series}
        ceilings.update({name: None for name in names.values()})
        for workers in sorted({w for _, _, ls in series for w in ls}):
            level_rows: dict[str, list] = {}
            for repeat in range(args.repeats):  # the systems alternate within each repeat
                for system, oracle, series_levels in series:
                    name = names[(system, oracle)]
                    if workers not in series_levels or name in stopped:
                        continue
                    print(f"{name}: {workers} workers, run {repeat + 1}/{args.repeats} "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)
                    try:
                        row = measure(system, oracle, workers, trial_s, args, base, space_file)
                    except Exception as exc:  # a chief that fell over is a ceiling too
                        row = {"system": system, "oracle": oracle, "workers": workers, "trial_seconds": trial_s,
                               "error": f"{type(exc).__name__}: {exc}"[:2000], "within_ceiling": False}
                    row["repeat"] = repeat
                    runs.append(row)
                    level_rows.setdefault(name, []).append(row)
                    print(json.dumps({k: row.get(k) for k in ("p99_ms_max", "busy_fraction", "lost", "duplicated",
                                                              "chief_cores", "chief_peak_rss_mib", "loadgen_cores",
                                                              "error")}), flush=True)
            for name, rows in level_rows.items():
                over = median([r.get("p99_ms_max", float("inf")) for r in rows]) > CEILING_P99_MS
                broken = any(r.get("error") or r.get("rpc_errors") or r.get("lost") or r.get("duplicated") or not r.get("alive")
                             for r in rows)
                if (over or broken) and ceilings[name] is None:
                    ceilings[name] = workers
                    if not args.past_ceiling:
                        stopped.add(name)
    medians = summarize_repeats(runs)
    headers = ["system", "oracle", "trial s", "workers", "runs", "p99 ms", "busy", "lost", "dup",
               "chief cores", "chief ms/call", "RSS MiB", "gen cores", "gen ms/call"]
    table(headers, [[m["system"], m["oracle"], m["trial_seconds"], m["workers"], m["runs"], m["p99_ms_max"] or "-",
                     m["busy_fraction"] or "-", m["lost"], m["duplicated"], m["chief_cores"] or "-",
                     m["chief_cpu_ms_per_call"] or "-", m["chief_peak_rss_mib"] or "-", m["loadgen_cores"] or "-",
                     m["loadgen_cpu_ms_per_call"] or "-"] for m in medians])
    print("ceilings (first level with p99 > 200 ms, an error, or a trial lost or duplicated; None: not reached):")
    for name, level in ceilings.items():
        print(f"  {name}: {level}")
    save({"machine": machine(), "command": " ".join(sys.argv), "chief_code": chief_code(args.chief_pythonpath),
          "ceiling_rule": "p99 > 200 ms, RPC error, lost or duplicated",
          "medians": medians, "runs": runs, "ceilings": ceilings}, args.out, "chief_scale")
    if args.keep:
        print(f"run folders under {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
