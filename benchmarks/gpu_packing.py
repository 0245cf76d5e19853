"""GPU packing: trials per hour with 1, 4 and 8 workers sharing one GPU (`cluster.workers_per_gpu`),
and the GPU memory each worker process holds (nvidia-smi, sampled while the search runs).

Each run is the same small random search (pima-comprehensive, `--trials` trials of `--epochs`
epochs, TensorBoard off) on GPU 0 only, timed from the first trial's start to the last trial's
end. Sized to finish in under ~8 minutes on a GPU machine with the defaults. Needs nvidia-smi and
a CUDA build of TensorFlow; it refuses to run without a GPU.

    python benchmarks/gpu_packing.py --out benchmarks/results/gpu_packing.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import iso_to_epoch, machine, run_up, save, table  # noqa: E402


def gpu_memory_by_pid() -> dict[int, float]:
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=20).stdout
    memory = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            memory[int(parts[0])] = float(parts[1])
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,4,8")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    try:
        gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except OSError:
        gpus = ""
    if "GPU" not in gpus:
        raise SystemExit("no GPU (nvidia-smi -L lists none): this benchmark needs one")
    from tunecluster.tuning.examples import csv_path

    os.environ["CUDA_VISIBLE_DEVICES"] = "0"  # the launcher gives every worker GPU 0
    before = machine()
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        work = Path(tempfile.mkdtemp(prefix=f"tunecluster-gpu-{workers}-"))
        (work / "spec.yaml").write_text(json.dumps({
            "name": f"gpu-{workers}", "hypermodel": "tunecluster.tuning.examples.pima:build_comprehensive",
            "data": {"csv": str(csv_path()), "target": "Outcome"},
            "tuner": {"kind": "random", "max_trials": args.trials, "seed": 1},
            "fit": {"epochs": args.epochs, "tensorboard": False},
            "cluster": {"workers": workers, "workers_per_gpu": workers}}))
        peak: dict[int, float] = {}
        stop = threading.Event()

        def sample():
            while not stop.wait(1.0):
                for pid, mib in gpu_memory_by_pid().items():
                    peak[pid] = max(peak.get(pid, 0.0), mib)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = run_up(["-f", "spec.yaml"], work / "run", work)
        finally:
            stop.set()
            sampler.join(5)
        trials = [t for t in result["document"]["trials"] if t["status"] == "COMPLETED"]
        span = max(iso_to_epoch(t["ended"]) for t in trials) - min(iso_to_epoch(t["started"]) for t in trials)
        per_worker = sorted(peak.values())
        rows.append({"workers": workers, "trials": len(trials), "span_s": span,
                     "trials_per_hour": 3600.0 * len(trials) / span,
                     "gpu_mib_per_worker_max": max(per_worker) if per_worker else None,
                     "gpu_mib_per_worker_mean": sum(per_worker) / len(per_worker) if per_worker else None,
                     "gpu_processes_seen": len(per_worker), "up_wall_s": result["wall_s"]})
        print(rows[-1], flush=True)
    table(["workers on GPU 0", "trials", "span s", "trials/hour", "GPU MiB/worker (max)", "GPU MiB/worker (mean)"],
          [[r["workers"], r["trials"], r["span_s"], r["trials_per_hour"], r["gpu_mib_per_worker_max"],
            r["gpu_mib_per_worker_mean"]] for r in rows])
    figures = {"benchmark": "gpu_packing", "machine_before": before, "machine_after": machine(),
               "gpus": gpus.strip().splitlines(), "rows": rows}
    save(figures, args.out, "gpu_packing")


if __name__ == "__main__":
    main()
