"""Lost work and recovery times under faults, measured side by side in one run.

Runs the chaos scenario of `tests/chaos/test_chaos.py` (a local search of 12 short Pima trials on 2
workers) twice: undisturbed, then with a worker SIGKILLed mid-trial 3 times and the chief once.
Prints, and saves to benchmarks/results/faults.json:

- per kill: the trial's training thrown away (seconds since it started), how long until the
  worker with the same id was back, how long until the trial ran again; for the chief kill, how
  long until a restarted chief answered and which trials it kept for their workers;
- the wall time of both runs and their ratio, and how long after the last trial every process
  was gone.

    python benchmarks/faults.py [--kills 3] [--out benchmarks/results/faults.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "chaos"))

import chaos_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="worker kills (the chief is killed once)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        calm = chaos_scenario.undisturbed(Path(scratch) / "calm")
        rough, _ = chaos_scenario.with_faults(Path(scratch) / "rough", worker_kills=args.kills,
                                              chief_kill_after=min(2, args.kills))
    worker_kills = [k for k in rough.kills if k["role"] != "chief"]
    chief_kills = [k for k in rough.kills if k["role"] == "chief"]
    figures = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                    "date": time.strftime("%Y-%m-%d")},
        "search": " ".join(chaos_scenario.SEARCH),
        "undisturbed": calm.summary(),
        "with_faults": rough.summary(),
        "wall_ratio_faults_vs_undisturbed": round(rough.wall_s / calm.wall_s, 2),
        "lost_training_s_total": round(sum(k["lost_work_s"] or 0 for k in worker_kills), 1),
        "worker_back_after_s_mean": round(sum(k["worker_back_after_s"] for k in worker_kills) / max(1, len(worker_kills)), 1),
        "trial_running_again_after_s_mean": round(
            sum(k["trial_running_again_after_s"] for k in worker_kills) / max(1, len(worker_kills)), 1),
        "chief_back_after_s": chief_kills[0]["back_after_s"] if chief_kills else None,
        "trials_kept_across_chief_kill": chief_kills[0]["running_trials"] if chief_kills else None,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")

    print(f"search: {figures['search']}")
    print(f"{'':34}{'undisturbed':>12}{'with faults':>14}")
    print(f"{'wall time (s)':34}{calm.wall_s:12.1f}{rough.wall_s:14.1f}   ratio {figures['wall_ratio_faults_vs_undisturbed']}x")
    print(f"{'COMPLETED trials':34}{calm.summary()['completed']:12d}{rough.summary()['completed']:14d}")
    print(f"{'processes gone after last trial (s)':34}{calm.gone_after_last_trial_s:12.1f}{rough.gone_after_last_trial_s:14.1f}")
    print("kills:")
    for kill in rough.kills:
        if kill["role"] == "chief":
            print(f"  {kill['at_s']:6.1f} s  chief      back after {kill['back_after_s']} s; "
                  f"trials kept for their workers: {', '.join(kill['running_trials']) or 'none'}")
        else:
            print(f"  {kill['at_s']:6.1f} s  {kill['role']:9}  trial {kill['trial']} at epoch {kill['epoch_at_kill']}: "
                  f"{kill['lost_work_s']} s of training lost; worker back after {kill['worker_back_after_s']} s, "
                  f"trial running again after {kill['trial_running_again_after_s']} s")
    print(f"total training lost: {figures['lost_training_s_total']} s; saved to {args.out}")
    return 0 if rough.exit_code == 0 and rough.summary()["completed"] == 12 else 1


if __name__ == "__main__":
    sys.exit(main())
