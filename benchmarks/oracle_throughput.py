"""Oracle server throughput: Keras Tuner's own chief server vs tunecluster's chief, side by side.

Each server is started fresh for each level of concurrency (1, 2, 8, 32, 64 clients) with the same
oracle (Keras Tuner's RandomSearchOracle over the 32 hyperparameters of the comprehensive Pima
space; no TensorFlow in either server process). Each client is a thread with its own channel and
tuner id, spread over a few client processes, and repeats a worker's RPC sequence as fast as it
can (a trial that does no training), one row per server and sequence:
- `keras_tuner`: Keras Tuner's chief, Keras Tuner's worker sequence: CreateTrial, UpdateTrial,
  EndTrial, GetBestTrials;
- `tunecluster`: tunecluster's chief, the same sequence plus a Heartbeat (with the token checked
  on every call): what a plain Keras Tuner worker does against tunecluster;
- `tunecluster_work`: tunecluster's chief, its own worker's sequence: WorkDone (with a result
  like a real worker's) whose answer carries the next unit (NextWork only when it does not), and
  a Heartbeat at most every 0.25 s per client (a worker coalesces its beats so);
- `grpc_empty`: a Python gRPC server whose handler does nothing, called once per "trial" with the
  same clients: the ceiling of Python gRPC on this machine (clients and server share its cores).
Each server runs `--repeats` times per level (3; the servers alternate) and the run with the
median RPC/s stands for it (every run's RPC/s and trials/s are kept in the JSON): single runs on
this 2-core machine vary by up to a third. Prints RPC/s, trials/s and p50/p99 latency per RPC
type; figures `rpc_per_s`, `trials_per_s` and `p99_ms`, and the ratios to Keras Tuner's server at
each level. Each run also records the CPU the server and the client processes spent per call
while every client was measuring (`server_cpu_ms_per_rpc`, `client_cpu_ms_per_rpc`, from /proc
and os.times()): clients and server share this machine's cores, and `ten_x_cost_for_clients` says
how many cores the clients alone would need at ten times Keras Tuner's RPC/s.

    python benchmarks/oracle_throughput.py --out benchmarks/results/oracle_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
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

from _common import comprehensive_space, machine, percentile, save, table  # noqa: E402

KT_SERVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, %(bench)r)
    from tunecluster.kt_compat import keras_stub
    keras_stub.install()
    import keras_tuner as kt
    from keras_tuner.src.distribute import oracle_chief
    from _common import comprehensive_space
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"),
                                           max_trials=10**7, seed=1)
    oracle._set_project_dir(%(dir)r, "kt")
    oracle.verbose = 0
    oracle.update_space(comprehensive_space())
    oracle_chief.start_server(oracle)
""")


EMPTY_SERVER = textwrap.dedent("""
    import time
    from concurrent import futures
    import grpc
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Empty", {"Call": handler}),))
    server.add_insecure_port("127.0.0.1:%(port)d")
    server.start()
    server.wait_for_termination()
""")

SERVERS = ("keras_tuner", "tunecluster", "tunecluster_work", "grpc_empty")


def process_cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system, all threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(kind: str, port: int, work: Path) -> subprocess.Popen:
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
           "KERASTUNER_TUNER_ID": "chief", "TF_CPP_MIN_LOG_LEVEL": "2"}
    work.mkdir(parents=True, exist_ok=True)
    if kind == "keras_tuner":
        script = work / "kt_server.py"
        script.write_text(KT_SERVER % {"bench": str(HERE), "dir": str(work)})
        cmd = [sys.executable, str(script)]
    elif kind == "grpc_empty":
        script = work / "empty_server.py"
        script.write_text(EMPTY_SERVER % {"port": port})
        cmd = [sys.executable, str(script)]
    else:
        spec = work / "spec.yaml"
        spec.write_text(json.dumps({"name": "throughput", "tuner": {"kind": "random", "max_trials": 10**7},
                                    "cluster": {"workers": 64}}))
        env.update({"TUNECLUSTER_SPEC": str(spec), "TUNECLUSTER_RUN_DIR": str(work), "TUNECLUSTER_TOKEN": "bench"})
        cmd = [sys.executable, "-m", "tunecluster", "chief"]
    process = subprocess.Popen(cmd, env=env, stdout=open(work / "server.log", "ab"), stderr=subprocess.STDOUT)
    import socket

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{kind} server did not listen: {(work / 'server.log').read_text()[-2000:]}")


def client_main(kind: str, address: str, threads: int, prefix: str, seconds: float, warmup: float) -> None:
    """One client process: `threads` workers doing the RPC sequence; prints latencies as JSON."""
    from tunecluster.kt_compat import keras_stub

    keras_stub.install()
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.engine import trial as trial_module

    from tunecluster.cluster.control import ControlClient
    from tunecluster.cluster.auth import Security, open_channel

    service = protos.get_service()
    completed = trial_module.TrialStatus.to_proto("COMPLETED")
    latencies: dict[str, list[float]] = {}
    counts = {"trials": 0}
    lock = threading.Lock()
    start_at = time.time() + 0.5
    measure_from, stop_at = start_at + warmup, start_at + warmup + seconds

    def work(index: int) -> None:
        tuner_id = f"tuner{prefix}_{index}"
        if kind in ("keras_tuner", "grpc_empty"):
            channel = grpc.insecure_channel(address)
            control = None
        else:
            channel = open_channel(address, Security(token="bench"), tuner_id=tuner_id)
            control = ControlClient(channel, timeout=60)
        stub = protos.get_service_grpc().OracleStub(channel)
        mine: dict[str, list[float]] = {}
        trials = 0

        def timed(name, call):
            t0 = time.perf_counter()
            result = call()
            if time.time() >= measure_from:
                mine.setdefault(name, []).append(time.perf_counter() - t0)
            return result

        time.sleep(max(0.0, start_at - time.time()))
        if kind == "grpc_empty":
            empty = channel.unary_unary("/bench.Empty/Call")
            empty(b"x", timeout=60, wait_for_ready=True)
            while time.time() < stop_at:
                timed("Empty", lambda: empty(b"x" * 64, timeout=60))
                if time.time() >= measure_from:
                    trials += 1
        unit = None  # the next unit, sent with the last WorkDone's answer (as the worker asks)
        beat_at = 0.0  # a worker's heartbeats are coalesced to one per 0.25 s (Heartbeat.min_gap)
        while kind == "tunecluster_work" and time.time() < stop_at:
            if unit is None:
                unit = timed("NextWork", lambda: control.call("NextWork", tuner_id=tuner_id))
            if unit.get("status") != "RUNNING":
                unit = None
                continue
            key = unit["key"]
            if time.time() >= beat_at:
                beat_at = time.time() + 0.25
                timed("Heartbeat", lambda: control.call("Heartbeat", tuner_id=tuner_id, state="running",
                                                        work=key, trial=key.split("#")[0]))
            values = unit["trial"]["hyperparameters"]["values"]
            result = {"values": values, "best": {"val_accuracy": 0.5, "val_loss": 0.7},
                      "last": {"val_accuracy": 0.5, "val_loss": 0.7}, "best_epoch": 0, "last_epoch": 0,
                      "epochs": 1, "degenerate": False, "weights": None, "duration_s": 0.0,
                      "timing": {"build_s": 0.0, "fit_s": 0.0, "check_s": 0.0, "save_s": 0.0}}
            reply = timed("WorkDone", lambda: control.call("WorkDone", tuner_id=tuner_id, key=key,
                                                           ok=True, result=result, next=True))
            if reply.get("accepted") and time.time() >= measure_from:
                trials += 1
            unit = reply.get("next")
        while kind in ("keras_tuner", "tunecluster") and time.time() < stop_at:
            trial = timed("CreateTrial", lambda: stub.CreateTrial(
                service.CreateTrialRequest(tuner_id=tuner_id), timeout=60, wait_for_ready=True)).trial
            if trial.trial_id:
                timed("UpdateTrial", lambda: stub.UpdateTrial(service.UpdateTrialRequest(
                    trial_id=trial.trial_id, metrics={"val_accuracy": 0.5}, step=0), timeout=60))
                trial.status = completed
                timed("EndTrial", lambda: stub.EndTrial(service.EndTrialRequest(trial=trial), timeout=60))
                if time.time() >= measure_from:
                    trials += 1
            timed("GetBestTrials", lambda: stub.GetBestTrials(service.GetBestTrialsRequest(num_trials=1), timeout=60))
            if control is not None:
                timed("Heartbeat", lambda: control.call("Heartbeat", tuner_id=tuner_id, state="running",
                                                        trial=trial.trial_id))
        with lock:
            for name, values in mine.items():
                latencies.setdefault(name, []).extend(values)
            counts["trials"] += trials

    cpu: dict[str, float] = {}

    def account() -> None:  # this process's CPU time (all its threads) over the measured window
        time.sleep(max(0.0, measure_from - time.time()))
        cpu["from"] = sum(os.times()[:2])
        time.sleep(max(0.0, stop_at - time.time()))
        cpu["to"] = sum(os.times()[:2])

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    pool.append(threading.Thread(target=account))
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps({"latencies": latencies, "trials": counts["trials"], "window": [measure_from, stop_at],
                      "cpu_s": cpu["to"] - cpu["from"]}))


def measure(kind: str, clients: int, seconds: float, warmup: float, work: Path, procs: int, run: int = 0) -> dict:
    from tunecluster.core.network import free_port

    port = free_port()
    server = start_server(kind, port, work / f"{kind}-{clients}-{run}")  # a fresh search each run
    try:
        if kind.startswith("tunecluster"):  # tunecluster's chief learns the space from SetSpace
            from tunecluster.cluster.control import ControlClient
            from tunecluster.cluster.auth import Security, open_channel

            channel = open_channel(f"127.0.0.1:{port}", Security(token="bench"), tuner_id="setup")
            ControlClient(channel, timeout=30).call("SetSpace", hyperparameters=comprehensive_space().get_config())
            channel.close()
        n_procs = max(1, min(procs, clients))
        shares = [clients // n_procs + (1 if i < clients % n_procs else 0) for i in range(n_procs)]
        runs = [subprocess.Popen([sys.executable, __file__, "--client", kind, f"127.0.0.1:{port}", str(share),
                                  str(i), str(seconds), str(warmup)], stdout=subprocess.PIPE, text=True)
                for i, share in enumerate(shares)]
        samples: list[tuple[float, float]] = []  # (wall time, the server's CPU seconds so far)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append((time.time(), process_cpu_s(server.pid)))
                done.wait(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        latencies: dict[str, list[float]] = {}
        trials = 0
        client_cores = 0.0
        windows = []
        try:
            for run in runs:
                out, _ = run.communicate(timeout=seconds + warmup + 300)
                result = json.loads(out.strip().splitlines()[-1])
                trials += result["trials"]
                for name, values in result["latencies"].items():
                    latencies.setdefault(name, []).extend(values)
                windows.append(result["window"])
                client_cores += result["cpu_s"] / (result["window"][1] - result["window"][0])
        finally:
            done.set()
            sampler.join()
    finally:
        server.kill()
        server.wait()
    # the server's CPU over the part of the run where every client was measuring
    start, end = max(w[0] for w in windows), min(w[1] for w in windows)
    inside = [(t, c) for t, c in samples if start <= t <= end]
    server_cores = ((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
                    if len(inside) >= 2 and inside[-1][0] > inside[0][0] else float("nan"))
    total = sum(len(v) for v in latencies.values())
    per_rpc = {name: {"count": len(v), "p50_ms": 1000 * percentile(v, 50), "p99_ms": 1000 * percentile(v, 99)}
               for name, v in sorted(latencies.items())}
    non_create = [x for name, v in latencies.items() if name not in ("CreateTrial", "NextWork", "WorkDone")
                  for x in v]
    rate = total / seconds
    return {"server": kind, "clients": clients, "seconds": seconds, "rpc_per_s": rate,
            "server_cores": server_cores, "client_cores": client_cores,
            "server_cpu_ms_per_rpc": 1000 * server_cores / rate if rate else None,
            "client_cpu_ms_per_rpc": 1000 * client_cores / rate if rate else None,
            "trials_per_s": trials / seconds, "p99_ms": 1000 * percentile([x for v in latencies.values() for x in v], 99),
            "p99_ms_non_create": 1000 * percentile(non_create, 99), "per_rpc": per_rpc}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        kind, address, threads, prefix, seconds, warmup = sys.argv[2:8]
        client_main(kind, address, int(threads), prefix, float(seconds), float(warmup))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,2,8,32,64")
    parser.add_argument("--servers", default=",".join(SERVERS), help="a subset of " + ", ".join(SERVERS))
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per server and level (the median is kept)")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunecluster-throughput-"))
    before = machine()
    rows = []
    for clients in [int(c) for c in args.clients.split(",")]:
        runs: dict[str, list[dict]] = {}
        for run in range(args.repeats):  # the servers alternate, so that a slow spell hits all of them
            for kind in args.servers.split(","):  # side by side at each level
                r = measure(kind, clients, args.seconds, args.warmup, work, args.client_processes, run)
                runs.setdefault(kind, []).append(r)
                print(f"{kind:12} {clients:3} clients: {r['rpc_per_s']:8.0f} RPC/s, {r['trials_per_s']:7.1f} trials/s, "
                      f"p99 {r['p99_ms']:.1f} ms", flush=True)
        for kind, measured in runs.items():  # the run with the median RPC/s stands for the level
            middle = sorted(measured, key=lambda r: r["rpc_per_s"])[len(measured) // 2]
            middle["runs_rpc_per_s"] = [r["rpc_per_s"] for r in measured]
            middle["runs_trials_per_s"] = [r["trials_per_s"] for r in measured]
            rows.append(middle)
    print()
    # the call that creates trials: CreateTrial, or WorkDone (it carries the next unit)
    first = {"keras_tuner": "CreateTrial", "tunecluster": "CreateTrial", "tunecluster_work": "WorkDone",
             "grpc_empty": "Empty"}
    table(["server", "clients", "RPC/s", "trials/s", "p99 ms", "p99 ms (other calls)",
           "Create/WorkDone p50", "p99", "server CPU ms/RPC", "clients' CPU ms/RPC"],
          [[r["server"], r["clients"], r["rpc_per_s"], r["trials_per_s"], r["p99_ms"], r["p99_ms_non_create"],
            r["per_rpc"][first[r["server"]]]["p50_ms"], r["per_rpc"][first[r["server"]]]["p99_ms"],
            r["server_cpu_ms_per_rpc"], r["client_cpu_ms_per_rpc"]] for r in rows])
    ratio, trial_ratio, ceiling = {}, {}, {}
    for clients in sorted({r["clients"] for r in rows}):
        level = {r["server"]: r for r in rows if r["clients"] == clients}
        base = level.get("keras_tuner")
        if base is None:
            continue
        ratio[str(clients)] = {k: r["rpc_per_s"] / base["rpc_per_s"] for k, r in level.items() if k != "keras_tuner"}
        trial_ratio[str(clients)] = {k: r["trials_per_s"] / base["trials_per_s"] for k, r in level.items()
                                     if k not in ("keras_tuner", "grpc_empty")}
        print(f"{clients:3} clients, RPC/s vs Keras Tuner's server: "
              + ", ".join(f"{k} {v:.2f}x" for k, v in ratio[str(clients)].items())
              + "; trials/s: " + ", ".join(f"{k} {v:.2f}x" for k, v in trial_ratio[str(clients)].items()))
        # What 10x Keras Tuner's RPC/s would cost the client processes alone, at the CPU per call
        # they spent against tunecluster's chief (Keras Tuner's worker sequence) and against the
        # empty server: the clients and the server share this machine's cores.
        target = 10 * base["rpc_per_s"]
        ceiling[str(clients)] = {"ten_x_rpc_per_s": target, "cores": os.cpu_count()}
        for kind in ("tunecluster", "grpc_empty"):
            ms = (level.get(kind) or {}).get("client_cpu_ms_per_rpc")
            if ms:
                ceiling[str(clients)][f"client_cores_at_ten_x_{kind}"] = target * ms / 1000
        print(f"    10x Keras Tuner = {target:.0f} RPC/s: the clients alone would need "
              + ", ".join(f"{v:.2f} cores ({k.removeprefix('client_cores_at_ten_x_')} clients)"
                          for k, v in ceiling[str(clients)].items() if k.startswith("client_cores"))
              + f" of the machine's {os.cpu_count()}")
    figures = {"benchmark": "oracle_throughput", "machine_before": before, "machine_after": machine(),
               "rows": rows, "rpc_ratio_vs_keras_tuner": ratio, "trials_ratio_vs_keras_tuner": trial_ratio,
               "ten_x_cost_for_clients": ceiling}
    save(figures, args.out, "oracle_throughput")


if __name__ == "__main__":
    main()
