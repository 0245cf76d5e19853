"""Oracle server throughput: Keras Tuner's own chief server vs tunecluster's chief, side by side.

Each server is started fresh for each level of concurrency (1, 8, 32, 64 clients) with the same
oracle (Keras Tuner's RandomSearchOracle over the 32 hyperparameters of the comprehensive Pima
space; no TensorFlow in either server process). Each client is a thread with its own channel and
tuner id, spread over a few client processes, and repeats a worker's RPC sequence as fast as it
can: CreateTrial, UpdateTrial, EndTrial, GetBestTrials, plus tunecluster's Heartbeat control RPC
for tunecluster (whose clients also send the token, checked on every call). Prints RPC/s,
trials/s and p50/p99 latency per RPC type; figures `rpc_per_s` and `p99_ms`.

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
    from tunecluster.cluster import keras_shim
    keras_shim.install()
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


def start_server(kind: str, port: int, work: Path) -> subprocess.Popen:
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
           "KERASTUNER_TUNER_ID": "chief", "TF_CPP_MIN_LOG_LEVEL": "2"}
    work.mkdir(parents=True, exist_ok=True)
    if kind == "keras_tuner":
        script = work / "kt_server.py"
        script.write_text(KT_SERVER % {"bench": str(HERE), "dir": str(work)})
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
    from tunecluster.cluster import keras_shim

    keras_shim.install()
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.engine import trial as trial_module

    from tunecluster.cluster.control import ControlClient
    from tunecluster.cluster.security import Security, open_channel

    service = protos.get_service()
    completed = trial_module.TrialStatus.to_proto("COMPLETED")
    latencies: dict[str, list[float]] = {}
    counts = {"trials": 0}
    lock = threading.Lock()
    start_at = time.time() + 0.5
    measure_from, stop_at = start_at + warmup, start_at + warmup + seconds

    def work(index: int) -> None:
        tuner_id = f"tuner{prefix}_{index}"
        if kind == "keras_tuner":
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
        while time.time() < stop_at:
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

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps({"latencies": latencies, "trials": counts["trials"]}))


def measure(kind: str, clients: int, seconds: float, warmup: float, work: Path, procs: int) -> dict:
    from tunecluster.cluster.local import free_port

    port = free_port()
    server = start_server(kind, port, work / f"{kind}-{clients}")
    try:
        if kind != "keras_tuner":  # tunecluster's chief learns the space from SetSpace
            from tunecluster.cluster.control import ControlClient
            from tunecluster.cluster.security import Security, open_channel

            channel = open_channel(f"127.0.0.1:{port}", Security(token="bench"), tuner_id="setup")
            ControlClient(channel, timeout=30).call("SetSpace", hyperparameters=comprehensive_space().get_config())
            channel.close()
        n_procs = max(1, min(procs, clients))
        shares = [clients // n_procs + (1 if i < clients % n_procs else 0) for i in range(n_procs)]
        runs = [subprocess.Popen([sys.executable, __file__, "--client", kind, f"127.0.0.1:{port}", str(share),
                                  str(i), str(seconds), str(warmup)], stdout=subprocess.PIPE, text=True)
                for i, share in enumerate(shares)]
        latencies: dict[str, list[float]] = {}
        trials = 0
        for run in runs:
            out, _ = run.communicate(timeout=seconds + warmup + 300)
            result = json.loads(out.strip().splitlines()[-1])
            trials += result["trials"]
            for name, values in result["latencies"].items():
                latencies.setdefault(name, []).extend(values)
    finally:
        server.kill()
        server.wait()
    total = sum(len(v) for v in latencies.values())
    per_rpc = {name: {"count": len(v), "p50_ms": 1000 * percentile(v, 50), "p99_ms": 1000 * percentile(v, 99)}
               for name, v in sorted(latencies.items())}
    non_create = [x for name, v in latencies.items() if name != "CreateTrial" for x in v]
    return {"server": kind, "clients": clients, "seconds": seconds, "rpc_per_s": total / seconds,
            "trials_per_s": trials / seconds, "p99_ms": 1000 * percentile([x for v in latencies.values() for x in v], 99),
            "p99_ms_non_create": 1000 * percentile(non_create, 99), "per_rpc": per_rpc}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        kind, address, threads, prefix, seconds, warmup = sys.argv[2:8]
        client_main(kind, address, int(threads), prefix, float(seconds), float(warmup))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunecluster-throughput-"))
    before = machine()
    rows = []
    for clients in [int(c) for c in args.clients.split(",")]:
        for kind in ("keras_tuner", "tunecluster"):  # side by side at each level
            rows.append(measure(kind, clients, args.seconds, args.warmup, work, args.client_processes))
            r = rows[-1]
            print(f"{kind:12} {clients:3} clients: {r['rpc_per_s']:8.0f} RPC/s, {r['trials_per_s']:7.1f} trials/s, "
                  f"p99 {r['p99_ms']:.1f} ms", flush=True)
    print()
    table(["server", "clients", "RPC/s", "trials/s", "p99 ms", "p99 non-Create ms", "Create p50", "Create p99"],
          [[r["server"], r["clients"], r["rpc_per_s"], r["trials_per_s"], r["p99_ms"], r["p99_ms_non_create"],
            r["per_rpc"]["CreateTrial"]["p50_ms"], r["per_rpc"]["CreateTrial"]["p99_ms"]] for r in rows])
    ratio = {}
    for clients in sorted({r["clients"] for r in rows}):
        kt_row = next(r for r in rows if r["clients"] == clients and r["server"] == "keras_tuner")
        tc_row = next(r for r in rows if r["clients"] == clients and r["server"] == "tunecluster")
        ratio[str(clients)] = tc_row["rpc_per_s"] / kt_row["rpc_per_s"]
        print(f"{clients:3} clients: tunecluster / Keras Tuner RPC/s = {ratio[str(clients)]:.1f}x")
    figures = {"benchmark": "oracle_throughput", "machine_before": before, "machine_after": machine(),
               "rows": rows, "rpc_ratio_tunecluster_vs_keras_tuner": ratio}
    save(figures, args.out, "oracle_throughput")


if __name__ == "__main__":
    main()
