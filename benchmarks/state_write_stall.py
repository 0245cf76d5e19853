"""How long the chief's periodic results.json write holds every RPC handler, side by side in one
run: the whole document through `json.dumps` (json's C encoder holds the GIL for all of it: the
chief before 2026-12-02), the rows one at a time (`core.rundir.json_in_pieces`), and the rows from
their cached texts (what the state writer does now: only changed rows are encoded again).

The document is results.json of a run (`--results PATH`), or a synthetic one of `--trials` rows
shaped like a random search's (a few hyperparameters, one execution with a 2-epoch curve). A
probe thread sleeps 1 ms in a loop; its worst extra delay while the encoding runs is the stall an
RPC handler sees. Figures: median of `--repeat` alternating rounds, encoding ms and stall ms.

    python benchmarks/state_write_stall.py --trials 10000 --out benchmarks/results/state_write_stall.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from pathlib import Path

from _common import machine, save, table

from tunecluster.core.rundir import json_in_pieces


def synthetic(trials: int) -> dict:
    rng = random.Random(0)
    rows = []
    for i in range(trials):
        score = round(rng.random(), 6)
        curve = [{"loss": round(rng.random(), 6), "val_accuracy": score} for _ in range(2)]
        rows.append({
            "trial_id": f"{i:05d}", "status": "COMPLETED", "score": score, "best_step": 1,
            "hyperparameters": {"x": rng.randint(0, 10**6), "units": rng.choice([8, 16, 32]), "lr": rng.random()},
            "all_hyperparameters": {"x": 1, "units": 8, "lr": 0.1}, "worker": f"tuner{i % 16}",
            "started": "2026-12-02T16:00:00+00:00", "ended": "2026-12-02T16:00:01+00:00", "duration_s": 1.002,
            "error_type": None, "message": None, "requeues": 0, "score_best_epoch": score,
            "score_last_epoch": score, "score_std": None,
            "executions": [{"index": 0, "seed": rng.randint(0, 2**31), "worker": f"tuner{i % 16}", "state": "done",
                            "score_best_epoch": score, "score_last_epoch": score, "best_epoch": 1,
                            "degenerate": False, "duration_s": 1.0, "timing": None, "saved_weights": True,
                            "error": None, "stopped_early": None, "resumed_from": None, "promoted_from": None,
                            "curve": curve}],
            "stopped_early": None, "curve": [score, score], "degenerate": False, "confirmed": None})
    return {"experiment": "synthetic", "tuner": "random", "objective": "val_accuracy", "direction": "max",
            "max_trials": trials, "finished": False, "trials": rows}


def stall(encode) -> tuple[float, float]:
    """(encoding s, the probe's worst extra delay s) for one call of `encode`."""
    stop, worst = threading.Event(), [0.0]

    def probe():
        while not stop.is_set():
            started = time.perf_counter()
            time.sleep(0.001)
            worst[0] = max(worst[0], time.perf_counter() - started - 0.001)

    thread = threading.Thread(target=probe)
    thread.start()
    time.sleep(0.05)
    started = time.perf_counter()
    encode()
    took = time.perf_counter() - started
    stop.set()
    thread.join()
    return took, worst[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--results", type=Path, help="a run's results.json instead of a synthetic document")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    document = json.loads(args.results.read_text()) if args.results else synthetic(args.trials)
    texts = [json.dumps(row, default=str) for row in document["trials"]]
    ways = {"whole document, json.dumps": lambda: json.dumps(document, default=str),
            "row by row": lambda: json_in_pieces(document, "trials"),
            "cached row texts (the chief now)": lambda: json_in_pieces(document, "trials", texts)}
    load = machine()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for _ in range(args.repeat):  # alternating rounds
        for name, encode in ways.items():
            samples[name].append(stall(encode))
    figures = {"machine": load, "rows": len(document["trials"]),
               "bytes": len(json.dumps(document, default=str)), "repeat": args.repeat, "ways": {}}
    rows = []
    for name, values in samples.items():
        took = statistics.median(v[0] for v in values) * 1000
        worst = statistics.median(v[1] for v in values) * 1000
        spread = [round(min(v[1] for v in values) * 1000, 1), round(max(v[1] for v in values) * 1000, 1)]
        figures["ways"][name] = {"encode_ms": round(took, 1), "stall_ms": round(worst, 1), "stall_ms_range": spread}
        rows.append([name, f"{took:.1f}", f"{worst:.1f}", f"{spread[0]}-{spread[1]}"])
    print(f"{figures['rows']} rows, {figures['bytes'] / 1e6:.1f} MB, load {load['loadavg'][0]:.1f}")
    table(["encoding", "encode ms", "stall ms (median)", "stall range"], rows)
    save(figures, args.out, "state_write_stall")


if __name__ == "__main__":
    main()
