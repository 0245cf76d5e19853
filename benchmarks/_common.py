"""Helpers shared by the benchmark scripts: the machine description every JSON carries, the
comprehensive Pima space (32 hyperparameters, built without TensorFlow), percentiles, and the
table/JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from tunecluster.tuning.examples import comprehensive_space  # noqa: F401  (the benchmarks import it from here)

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """Cores, load average and platform, recorded with every figure (the machine is shared)."""
    return {"cpus": os.cpu_count(), "loadavg": list(os.getloadavg()), "python": platform.python_version(),
            "platform": platform.platform(), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def percentile(values, q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


def save(figures: dict, out: Path | None, name: str) -> Path:
    """Write the figures to `out`, or to benchmarks/results/<name>.json when no --out is given
    (a run with --out elsewhere leaves the checkout's recorded figures alone)."""
    target = Path(out).resolve() if out else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(figures, indent=2, default=float) + "\n")
    print(f"wrote {target}")
    return target


def table(headers: list[str], rows: list[list]) -> None:
    widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(str(h).rjust(w) for h, w in zip(headers, widths)))
    for row in rows:
        print("  ".join(_fmt(v).rjust(w) for v, w in zip(row, widths)))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process (MiB), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def run_up(args: list[str], run_dir: Path, cwd: Path, on_trial=None, timeout: float = 1800, on_poll=None) -> dict:
    """Run `tunecluster up ... --dir run_dir` to the end, sampling every worker's RSS (peak) and,
    after each newly finished trial, calling `on_trial(document, worker_pids)`; `on_poll(roles)`
    gets cluster.json's roles (chief included) at every poll (0.2 s), without reading results.json.
    Returns wall time, the start time, the peak RSS per worker and the final results document."""
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.time()
    # up's output goes to a file: a pipe read only at the end fills up (the live view and the
    # results table of a long search exceed its 64 KiB) and blocks `up` before it can exit.
    log_path = Path(cwd) / "up.log"
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "-m", "tunecluster", "up", *args, "--no-confirm", "--dir", str(run_dir)],
                               cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    peak: dict[str, float] = {}
    seen_done = 0
    while process.poll() is None and time.time() - started < timeout:
        time.sleep(0.2)
        try:
            roles = json.loads((run_dir / "cluster.json").read_text())["roles"]
        except (OSError, ValueError, KeyError):
            continue
        if on_poll is not None:
            on_poll(roles)
        pids = {r["name"]: r["pid"] for r in roles if r["name"].startswith("worker")}
        for name, pid in pids.items():
            rss = rss_mib(pid)
            if rss:
                peak[name] = max(peak.get(name, 0.0), rss)
        if on_trial is not None:
            try:
                document = json.loads((run_dir / "results.json").read_text())
            except (OSError, ValueError):
                continue
            done = sum(1 for t in document["trials"] if t.get("ended"))
            if done > seen_done:
                seen_done = done
                on_trial(document, pids)
    process.wait()
    wall = time.time() - started
    log.close()
    out = log_path.read_text(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"up failed ({process.returncode}):\n{out[-3000:]}")
    document = json.loads((run_dir / "results.json").read_text())
    return {"wall_s": wall, "started_at": started, "ended_at": started + wall, "peak_rss_mib": peak,
            "document": document}


def iso_to_epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()
