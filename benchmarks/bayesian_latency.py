"""Bayesian suggestion latency: tunecluster's oracle (`fast_oracles`) vs Keras Tuner's, on the
comprehensive Pima space with all 32 hyperparameters registered.

Part 1: both oracles get the same completed trials (random values, a synthetic noisy score in the
range of Pima's validation accuracy) and the time of `create_trial` (a Gaussian-process
suggestion, `num_initial_points=10`) is taken at 50, 100, 300 and 1000 completed trials. Keras
Tuner's oracle runs in a child process with a time budget per level (`--kt-budget`).

Part 2: with 300 completed trials, each server (tunecluster's chief servicer on its thread pool,
with the chief's per-call speed-ups; Keras Tuner's `OracleServicer` on its one-thread server)
serves real gRPC in this process to clients in two child processes: one client asks for
suggestions back to back, and 64 clients (`--clients`) each make a call every 0.25 s
(`--interval`: UpdateTrial, GetBestTrials and tunecluster's Heartbeat in turn, a busy worker's
rate). The latency of those other calls is recorded while a suggestion is being computed (a call
that overlaps a suggestion's computation, by wall clock), and of the same calls while none is (the
baseline). Figures `suggest_ms_at_300`, `other_rpc_p99_ms_during_suggest`.

    python benchmarks/bayesian_latency.py --out benchmarks/results/bayesian_latency.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import comprehensive_space, machine, percentile, save, table  # noqa: E402

LEVELS = (50, 100, 300, 1000)


def score(values: dict) -> float:
    """Pima-like: 0.6-0.8, a weak dependence on a few hyperparameters, deterministic noise."""
    noise = int(hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8], 16) / 2**32
    trend = -0.004 * (values["num_layers"] - 3) ** 2 - 0.05 * abs(values["dropout_0"] - 0.3)
    return 0.74 + max(trend, -0.1) + (0.01 if values["optimizer"] == "adam" else 0.0) + 0.04 * (noise - 0.5)


def make_oracle(kind: str, num_initial_points: int = 10):
    import keras_tuner as kt

    from tunecluster.tuning.bayesian_oracle import BayesianOptimizationOracle

    cls = BayesianOptimizationOracle if kind == "tunecluster" else kt.oracles.BayesianOptimizationOracle
    oracle = cls(objective=kt.Objective("val_accuracy", "max"), max_trials=100000, seed=1,
                 num_initial_points=num_initial_points)
    oracle._set_project_dir(tempfile.mkdtemp(prefix="bayes-"), "p")
    oracle.verbose = 0
    oracle.update_space(comprehensive_space())
    return oracle


def complete(oracle, tuner_id: str = "w") -> float:
    """One trial: create (timed), report, end. Returns the create_trial seconds."""
    t0 = time.perf_counter()
    trial = oracle.create_trial(tuner_id)
    elapsed = time.perf_counter() - t0
    oracle.update_trial(trial.trial_id, {"val_accuracy": score(trial.hyperparameters.values)})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return elapsed


def fill_to(oracle, n: int) -> None:
    saved = oracle.num_initial_points
    oracle.num_initial_points = 10**9  # random values while filling
    while sum(1 for t in oracle.trials.values() if t.status == "COMPLETED") < n:
        complete(oracle)
    oracle.num_initial_points = saved


def child_levels(kind: str, levels: list[int], repeats: int) -> None:
    """Runs in a child process: prints one JSON line per level."""
    from tunecluster.kt_compat import keras_stub

    keras_stub.install()
    oracle = make_oracle(kind)
    for n in levels:
        fill_to(oracle, n)
        times = [complete(oracle) for _ in range(repeats)]
        print(json.dumps({"n": n, "times": times, "timing": getattr(oracle, "last_timing", None)}), flush=True)


def part1(levels, kt_budget: float, repeats: int) -> dict:
    results = {}
    for kind in ("tunecluster", "keras_tuner"):
        results[kind] = {}
        process = subprocess.Popen([sys.executable, __file__, "--child", kind, ",".join(map(str, levels)),
                                    str(repeats if kind == "tunecluster" else 1)],
                                   stdout=subprocess.PIPE, text=True)
        deadline = time.time() + (kt_budget * len(levels) if kind == "keras_tuner" else 1800)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout))
        reader.start()
        while process.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        if process.poll() is None:
            process.kill()
        reader.join(10)
        for line in lines:
            row = json.loads(line)
            results[kind][row["n"]] = {"median_ms": 1000 * percentile(row["times"], 50),
                                       "max_ms": 1000 * max(row["times"]), "runs": len(row["times"]),
                                       "timing": row["timing"]}
            print(f"{kind:12} {row['n']:5} completed: {results[kind][row['n']]['median_ms']:.0f} ms", flush=True)
    return results


def clients_child(kind: str, address: str, threads: int, seconds: float, interval: float, suggest: bool,
                  offset: int = 0) -> None:
    """Runs in a child process: `threads` workers each make one call every `interval` seconds
    (UpdateTrial, GetBestTrials, and tunecluster's Heartbeat in turn), and one suggester (when
    `suggest`) asks for trials back to back. Prints the calls as JSON (wall start, wall end, s)."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.engine import trial as trial_module

    from tunecluster.cluster.control import ControlClient

    service = protos.get_service()
    stop_at = time.time() + seconds
    calls: list[tuple[float, float, float]] = []
    suggestions: list[float] = []
    lock = threading.Lock()

    def suggester():
        stub = protos.get_service_grpc().OracleStub(grpc.insecure_channel(address))
        while time.time() < stop_at:
            t0 = time.perf_counter()
            trial = stub.CreateTrial(service.CreateTrialRequest(tuner_id="suggester"), timeout=600).trial
            suggestions.append(time.perf_counter() - t0)
            stub.UpdateTrial(service.UpdateTrialRequest(trial_id=trial.trial_id, metrics={"val_accuracy": 0.7}),
                             timeout=600)
            trial.status = trial_module.TrialStatus.to_proto("COMPLETED")
            stub.EndTrial(service.EndTrialRequest(trial=trial), timeout=600)

    def other(index):
        name = f"other{offset + index}"
        channel = grpc.insecure_channel(address)
        stub = protos.get_service_grpc().OracleStub(channel)
        control = ControlClient(channel, timeout=600) if kind == "tunecluster" else None
        mine = stub.CreateTrial(service.CreateTrialRequest(tuner_id=name), timeout=600,
                                wait_for_ready=True).trial.trial_id
        options = [lambda: stub.UpdateTrial(service.UpdateTrialRequest(trial_id=mine, metrics={"val_accuracy": 0.7}),
                                            timeout=600),
                   lambda: stub.GetBestTrials(service.GetBestTrialsRequest(num_trials=1), timeout=600)]
        if control is not None:
            options.append(lambda: control.call("Heartbeat", tuner_id=name, state="running"))
        time.sleep(interval * index / threads)  # spread the clients over the interval
        turn = 0
        while time.time() < stop_at:
            started, t0 = time.time(), time.perf_counter()
            options[turn % len(options)]()
            elapsed = time.perf_counter() - t0
            with lock:
                calls.append((started, time.time(), elapsed))
            turn += 1
            time.sleep(max(0.0, interval - elapsed))

    pool = [threading.Thread(target=other, args=(i,)) for i in range(threads)]
    if suggest:
        time.sleep(1.0)  # the other clients' first CreateTrial first
        pool.append(threading.Thread(target=suggester))
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps({"calls": calls, "suggestions": suggestions}))


def part2(seconds: float, servers=("keras_tuner", "tunecluster"), clients: int = 64, interval: float = 0.25,
          processes: int = 2) -> dict:
    """Other RPCs while suggestions are computed: each server in this process over real gRPC,
    its clients in child processes (they do not share the server's interpreter)."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    from tunecluster.kt_compat import oracle_methods
    from tunecluster.cluster.chief import ChiefServicer, ControlService, SearchBook
    from tunecluster.cluster.control import control_handler
    from tunecluster.cluster.leases import Leases
    from tunecluster.core.network import free_port
    from tunecluster.tuning.bayesian_oracle import oracle_lock

    out = {}
    for kind in servers:
        oracle = make_oracle(kind)
        fill_to(oracle, 300)
        # each other client holds a running trial from the start (random values, as in fill_to):
        # its CreateTrial then returns that trial instead of queueing 64 suggestions at once
        saved, oracle.num_initial_points = oracle.num_initial_points, 10**9
        for index in range(clients):
            oracle.create_trial(f"other{index}")
        oracle.num_initial_points = saved
        busy: list[list[float]] = []  # wall-clock [start, end] of each suggestion's computation
        hook = "_compute" if kind == "tunecluster" else "populate_space"
        original = getattr(oracle, hook)

        def marked(*args, _original=original, **kwargs):
            span = [time.time(), float("inf")]
            busy.append(span)
            try:
                return _original(*args, **kwargs)
            finally:
                span[1] = time.time()

        setattr(oracle, hook, marked)
        if kind == "tunecluster":  # as the chief serves it (its per-call speed-ups installed)
            oracle_methods.install(oracle, lambda o=oracle: oracle_lock(o))
            book = SearchBook()
            servicer = ChiefServicer(oracle, book, 0.0, Leases(300))
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=2 * clients + 4))
            server.add_generic_rpc_handlers((control_handler(ControlService(servicer, book, lambda: {})),))
        else:
            servicer = OracleServicer(oracle)
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # Keras Tuner's own setting
        protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
        port = free_port()
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
        runs = [subprocess.Popen([sys.executable, __file__, "--clients-child", kind, f"127.0.0.1:{port}", str(share),
                                  str(seconds), str(interval), "1" if i == 0 else "0", str(sum(shares[:i]))],
                                 stdout=subprocess.PIPE, text=True)
                for i, share in enumerate(shares)]
        calls, suggestions = [], []
        for run in runs:
            text, _ = run.communicate(timeout=seconds + 900)
            result = json.loads(text.strip().splitlines()[-1])
            calls += result["calls"]
            suggestions += result["suggestions"]
        server.stop(0)
        spans = [(a, b) for a, b in busy]
        during = [s for t0, t1, s in calls if any(a < t1 and t0 < b for a, b in spans)]
        outside = [s for t0, t1, s in calls if not any(a < t1 and t0 < b for a, b in spans)]
        out[kind] = {"clients": clients, "interval_s": interval, "suggestions": len(suggestions),
                     "suggest_p50_ms": 1000 * percentile(suggestions, 50),
                     "other_calls_during_suggest": len(during),
                     "other_rpc_p50_ms_during_suggest": 1000 * percentile(during, 50),
                     "other_rpc_p99_ms_during_suggest": 1000 * percentile(during, 99),
                     "other_calls_outside_suggest": len(outside),
                     "other_rpc_p50_ms_outside_suggest": 1000 * percentile(outside, 50),
                     "other_rpc_p99_ms_outside_suggest": 1000 * percentile(outside, 99)}
        print(kind, out[kind], flush=True)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_levels(sys.argv[2], [int(n) for n in sys.argv[3].split(",")], int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--clients-child":
        kind, address, threads, seconds, interval, suggest, offset = sys.argv[2:9]
        clients_child(kind, address, int(threads), float(seconds), float(interval), suggest == "1", int(offset))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--repeats", type=int, default=5, help="tunecluster suggestions per level")
    parser.add_argument("--kt-budget", type=float, default=150.0, help="seconds per level for Keras Tuner")
    parser.add_argument("--seconds", type=float, default=20.0, help="part 2 duration per server")
    parser.add_argument("--clients", type=int, default=64, help="part 2: clients making other calls")
    parser.add_argument("--interval", type=float, default=0.25, help="part 2: seconds between a client's calls")
    parser.add_argument("--skip-part1", action="store_true")
    parser.add_argument("--part2-servers", default="keras_tuner,tunecluster",
                        help="servers measured in part 2 (Keras Tuner's needs minutes per suggestion on a busy machine)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from tunecluster.kt_compat import keras_stub

    keras_stub.install()
    before = machine()
    levels = [int(n) for n in args.levels.split(",")]
    latency = {"tunecluster": {}, "keras_tuner": {}} if args.skip_part1 else part1(levels, args.kt_budget, args.repeats)
    rows = []
    for n in levels:
        tc, kt_row = latency["tunecluster"].get(n, {}), latency["keras_tuner"].get(n, {})
        rows.append([n, tc.get("median_ms", float("nan")), tc.get("max_ms", float("nan")),
                     kt_row.get("median_ms", f"> {args.kt_budget:.0f} s budget")])
    table(["completed", "tunecluster ms (median)", "tunecluster ms (max)", "Keras Tuner ms"], rows)
    during = part2(args.seconds, args.part2_servers.split(","), args.clients, args.interval)
    table(["server", "suggestions", "suggest p50 ms", "other RPCs during", "other p50 ms", "other p99 ms",
           "p50 ms, no suggestion", "p99 ms, no suggestion"],
          [[k, v["suggestions"], v["suggest_p50_ms"], v["other_calls_during_suggest"],
            v["other_rpc_p50_ms_during_suggest"], v["other_rpc_p99_ms_during_suggest"],
            v["other_rpc_p50_ms_outside_suggest"], v["other_rpc_p99_ms_outside_suggest"]] for k, v in during.items()])
    figures = {"benchmark": "bayesian_latency", "machine_before": before, "machine_after": machine(),
               "space": "pima comprehensive, 32 hyperparameters", "levels": latency, "during_suggest": during,
               "suggest_ms_at_300": latency["tunecluster"].get(300, {}).get("median_ms"),  # absent with --skip-part1
               "keras_tuner_suggest_ms_at_300": latency["keras_tuner"].get(300, {}).get("median_ms"),
               "other_rpc_p99_ms_during_suggest": during["tunecluster"]["other_rpc_p99_ms_during_suggest"],
               "keras_tuner_other_rpc_p99_ms_during_suggest":
                   during.get("keras_tuner", {}).get("other_rpc_p99_ms_during_suggest")}
    save(figures, args.out, "bayesian_latency-part2" if args.skip_part1 else "bayesian_latency")


if __name__ == "__main__":
    main()
