"""Early-stopping benchmark: the Pima comprehensive space searched side by side, in one run, by

  random     random search, every training to max_epochs
  hyperband  tunecluster's Hyperband (max_epochs, factor 3)
  median     random search with median stopping (grace 3 epochs, 3 trials)
  asha       ASHA (min_epochs 1, max_epochs, eta 3)
  stock      stock Keras Tuner's Hyperband (max_epochs, factor 3): its own chief and two stock
             workers (KERASTUNER_* variables), the same model, data split and seed

each with the same wall-clock budget (`--budget` seconds from the search's first trial start;
`tuner.max_time` for tunecluster, whose running trainings then finish; stock Keras Tuner has no
budget, so its chief and workers are stopped at it and its unfinished trials count for nothing),
on `--workers` workers, for each seed in turn (the methods alternate within a seed), and
tunecluster's confirmation stage (top 3 retrained 3 times, test rows held out; `--confirm`) after each
tunecluster method. Per method and seed: wall time, trials, epochs trained (a promoted or later-
round training counts only the epochs it added), worker utilisation (busy / (window x workers),
window = first trial start to last trial end: tunecluster's from the report's timeline, stock's
from the times its `run_trial` began and ended, recorded by a subclass in its script; with a
budget also `utilisation_in_budget`, the same over the budget's window only, the one window both
systems share: stock's roles are stopped at the budget, tunecluster's running trainings go on
past it alone), time from
the first trial start to the best trial's end, the search's best validation accuracy, and for
tunecluster the confirmed winner's validation and test accuracy; then the mean and spread over seeds.

    python benchmarks/early_stopping.py --out benchmarks/results/early_stopping.json

`--budget-for asha=160` gives one method its own budget (repeat it for more): e.g. ASHA a third of
random search's, to read the "<= 1/3 of the epochs" target at equal accuracy rather than at equal
time. With random search among the methods, the summary also has `against_random` for every other
method: its mean epochs over random search's, and the per-seed difference of the confirmed test
accuracy (mean and standard error of the paired differences, over the seeds both ran).

`--budget 0` gives every method `--configs` configurations instead of a time budget. `--model sleep`
swaps in `epoch_sleep_model.py` (every epoch a sleep, a made-up curve; no confirmation) for the
utilisation on more workers than this machine has cores, e.g. `--model sleep --workers 8 --methods
asha,hyperband,stock`. `--model generated` searches the same space on the larger generated task of
`generated_task.py` (72,000 rows of 40 features: an epoch takes seconds here, and its 12,000
validation and 12,000 test rows measure accuracy to ~0.004; why it, in that module), written once
into the run's temporary folder. `--quick` is a smoke run (1 seed, 3 epochs, 10 s budget); its
figures measure nothing.

The file is rewritten after every run (`"complete": false` until the last), so a long run that is
stopped keeps what it measured; `--first-seed N` runs seeds N, N+1, ... and `--merge A.json B.json
--out C.json` joins the runs of such parts (the same settings) and summarises them again.
`--keep DIR` copies each tunecluster method's results.json there (NAME-SEED.json: every
training's curve and timing), which `epoch_cost.py` reads to say where each method's epochs went.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import iso_to_epoch, machine, save, table  # noqa: E402

METHODS = ("random", "hyperband", "median", "asha", "stock")
HERE = Path(__file__).resolve().parent

STOCK_ROLE = """
import json, os, sys, time
sys.path.insert(0, %(repo)r)
import keras_tuner as kt
from tunecluster.tuning.datasets import load_splits
from tunecluster.tuning.spec import DataSpec
%(build_import)s

splits = load_splits(DataSpec(**json.loads(%(data)r)))
times = open(os.path.join(sys.argv[1], "times-" + os.environ["KERASTUNER_TUNER_ID"] + ".jsonl"), "a")


class TimedHyperband(kt.Hyperband):
    def run_trial(self, trial, *args, **kwargs):
        times.write(json.dumps({"trial": trial.trial_id, "start": time.time()}) + "\\n"); times.flush()
        result = super().run_trial(trial, *args, **kwargs)
        times.write(json.dumps({"trial": trial.trial_id, "end": time.time()}) + "\\n"); times.flush()
        return result


tuner = TimedHyperband(lambda hp: build(hp, splits), objective="val_accuracy",
                       max_epochs=%(max_epochs)d, factor=3, hyperband_iterations=%(iterations)d, seed=%(seed)d,
                       directory=sys.argv[1], project_name="kt")
tuner.search(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val), batch_size=32, verbose=0)
"""


COMPREHENSIVE = "from tunecluster.tuning.examples.pima import build_comprehensive as build"
BUILDS = {"pima": COMPREHENSIVE, "generated": COMPREHENSIVE,
          "sleep": f"sys.path.insert(0, {str(HERE)!r})\nfrom epoch_sleep_model import build"}


def data_for(model: str, work: Path) -> dict:
    """The spec's `data` section: Pima's rows with a fifth held out for the test, or the generated
    task's CSV (written into `work` once)."""
    if model == "generated":
        from generated_task import data_section, write_csv

        return data_section(write_csv(work / "generated.csv"))
    return pima_data()


def pima_data() -> dict:
    """Pima's rows, a fifth held out for the test."""
    from tunecluster.tuning.examples import example_spec

    return {**example_spec("pima-comprehensive").data.model_dump(mode="json"), "test_fraction": 0.2}


def spec_for(method: str, seed: int, configs: int, max_epochs: int, workers: int, confirm: tuple,
             budget: float = 0, model: str = "pima", data: dict | None = None) -> dict:
    from tunecluster.tuning.examples import example_spec

    spec = example_spec("pima-comprehensive").model_dump(mode="json")
    spec["name"] = f"es-{method}-{seed}"
    spec["data"] = data or pima_data()
    tuner = spec["tuner"]
    tuner.update(seed=seed, max_trials=configs, kind="random")
    spec["fit"].update(epochs=max_epochs, tensorboard=False)
    spec["confirm"].update(enabled=True, top=confirm[0], repeats=confirm[1])
    spec["cluster"].update(workers=workers)
    if model == "sleep":
        spec["hypermodel"] = f"{HERE / 'epoch_sleep_model.py'}:build"
        spec["confirm"]["enabled"] = False  # its curves are made up: nothing to confirm
    if method == "hyperband":
        tuner.update(kind="hyperband", hyperband={"max_epochs": max_epochs, "factor": 3, "hyperband_iterations": 1})
    elif method == "median":
        tuner["early_stopping"] = {"kind": "median", "grace_epochs": min(3, max_epochs), "min_trials": 3}
    elif method == "asha":
        tuner.update(kind="asha", asha={"min_epochs": 1, "max_epochs": max_epochs, "reduction_factor": 3})
    if budget:
        # the clock ends the search: more configurations (and Hyperband iterations) than fit in it
        tuner.update(max_time=budget, max_trials=100_000)
        if method == "hyperband":
            tuner["hyperband"]["hyperband_iterations"] = 20
    return spec


def read_times(folder: Path) -> dict[str, dict]:
    """The stock workers' trial start and end times: {trial id: {start, end, worker}}."""
    trials: dict[str, dict] = {}
    for path in folder.glob("times-*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                trials.setdefault(entry["trial"], {"worker": path.stem[6:]}).update(
                    {k: v for k, v in entry.items() if k != "trial"})
    return trials


def run_stock(work: Path, seed: int, max_epochs: int, workers: int, budget: float, model: str = "pima",
              data: dict | None = None) -> dict:
    """Stock Keras Tuner's Hyperband: a chief and `workers` worker processes of one script, stopped
    `budget` seconds after the first trial started (or when the search ends by itself)."""
    from tunecluster.core.network import free_port

    folder = work / f"es-stock-{seed}"
    folder.mkdir(parents=True)
    script = folder / "stock_role.py"
    script.write_text(STOCK_ROLE % {"repo": str(HERE.parent), "max_epochs": max_epochs, "seed": seed,
                                    "build_import": BUILDS[model], "data": json.dumps(data or data_for(model, work)),
                                    "iterations": 20 if budget else 1})
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port()),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.time()
    roles = []
    for tuner_id in ["chief"] + [f"tuner{i}" for i in range(workers)]:
        roles.append(subprocess.Popen([sys.executable, str(script), str(folder)],
                                      env={**env, "KERASTUNER_TUNER_ID": tuner_id}, stdout=subprocess.DEVNULL,
                                      stderr=open(folder / f"{tuner_id}.log", "w")))
    stopped_at = None
    try:
        while any(role.poll() is None for role in roles[1:]):
            starts = [t["start"] for t in read_times(folder).values() if "start" in t]
            if budget and starts and time.time() >= min(starts) + budget:
                stopped_at = time.time()
                break
            if time.time() - started > 3600:
                raise SystemExit("stock Keras Tuner ran for an hour; see " + str(folder))
            time.sleep(0.2)
    finally:
        for role in roles:
            role.kill()
            role.wait()
    wall = time.time() - started
    times = read_times(folder)
    if not times:
        raise SystemExit(f"stock Keras Tuner ran no trial; see {folder / 'tuner0.log'}")
    end_of_window = stopped_at or max(t.get("end", 0) for t in times.values())
    first = min(t["start"] for t in times.values())
    busy = sum(min(t.get("end", end_of_window), end_of_window) - t["start"] for t in times.values())
    epochs, best = 0, None
    for path in (folder / "kt").glob("trial_*/trial.json"):
        trial = json.loads(path.read_text())
        if trial.get("status") != "COMPLETED" or trial["trial_id"] not in times or "end" not in times[trial["trial_id"]]:
            continue
        values = trial["hyperparameters"]["values"]
        epochs += values.get("tuner/epochs", max_epochs) - values.get("tuner/initial_epoch", 0)
        if trial.get("score") is not None and (best is None or trial["score"] > best["score"]):
            best = trial
    completed = sum(1 for t in times.values() if "end" in t)
    share = round(busy / ((end_of_window - first) * workers), 3)
    return {"wall_s": round(wall, 1), "trials": completed, "epochs_trained": epochs, "stopped_early": 0,
            "utilisation": share,
            "utilisation_in_budget": share if stopped_at else None,  # its window ends at the budget
            "time_to_best_s": round(times[best["trial_id"]]["end"] - first, 1) if best else None,
            "search_best": best["score"] if best else None,
            "confirmed_validation": None, "confirmed_test": None}


def run_method(work: Path, spec: dict, workers: int, keep: Path | None = None) -> dict:
    folder = work / spec["name"]
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    started = time.time()
    with (folder / "up.log").open("w") as log:
        code = subprocess.call([sys.executable, "-m", "tunecluster", "up", "-f", "spec.yaml", "--dir", "run"],
                               cwd=folder, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=log,
                               stderr=subprocess.STDOUT)
    wall = time.time() - started
    if code != 0:
        raise SystemExit(f"{spec['name']}: up failed ({code}), see {folder / 'up.log'}")
    if keep:  # the run's results.json (every training's curve and timing), for epoch_cost.py
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "run" / "results.json", keep / f"{spec['name']}.json")
    return figures(folder / "run", wall, workers, spec["tuner"].get("max_time") or 0)


def busy_within(bars, workers: int, budget: float) -> float | None:
    """Utilisation over the budget's window (first trial start to first start + budget), each
    worker's bars clipped to it: the share of worker time spent in trainings while new trials
    could start. Stock Keras Tuner's roles are stopped at the budget, so its figure has the same
    window; after it tunecluster lets the running trainings finish (tuner.max_time), a tail
    where fewer and fewer workers are busy, which `utilisation` counts and this does not."""
    if not bars or not budget:
        return None
    first = min(b.start for b in bars)
    cutoff = first + budget
    end = min(max(b.end for b in bars), cutoff)
    busy = 0.0
    for name in {b.worker for b in bars}:
        cursor = first
        for start, stop in sorted((b.start, b.end) for b in bars if b.worker == name):
            start, stop = max(start, cursor), min(stop, cutoff)
            if stop > start:
                busy += stop - start
                cursor = stop
    return round(busy / ((end - first) * workers), 3) if end > first else None


def figures(run: Path, wall: float, workers: int, budget: float = 0) -> dict:
    from tunecluster.report.data import load_run, timeline, utilisation

    document = json.loads((run / "results.json").read_text())
    trials = document["trials"]
    epochs = 0
    for trial in trials:
        for execution in trial["executions"]:
            epochs += len(execution.get("curve") or []) - (execution.get("promoted_from") or 0)
    scored = [t for t in trials if t["score"] is not None and t["ended"]]
    best = (max if document["direction"] == "max" else min)(scored, key=lambda t: t["score"]) if scored else None
    search_best = best["score"] if best else None
    first = min(iso_to_epoch(t["started"]) for t in trials if t["started"])
    winner = next((t for t in trials if t["trial_id"] == document.get("best_trial")), None)
    confirmed = (winner or {}).get("confirmed") or {}
    data = load_run(run)
    usage = utilisation(data)
    busy = sum(w["busy_s"] for w in usage["workers"].values())
    return {"wall_s": round(wall, 1), "trials": len(trials), "epochs_trained": epochs,
            "stopped_early": sum(1 for t in trials if t["status"] == "STOPPED_EARLY"),
            "utilisation": round(busy / (usage["window_s"] * workers), 3) if usage["window_s"] else None,
            "utilisation_in_budget": busy_within(timeline(data), workers, budget),
            "time_to_best_s": round(iso_to_epoch(best["ended"]) - first, 1) if best else None,
            "search_best": search_best, "confirmed_validation": confirmed.get("mean"), "confirmed_test": confirmed.get("test_mean")}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in ("wall_s", "trials", "epochs_trained", "utilisation", "utilisation_in_budget", "time_to_best_s", "search_best",
                "confirmed_validation", "confirmed_test"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = {"mean": statistics.fmean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else None}
    return out


def against_random(results: dict[str, list]) -> dict:
    """Every method beside random search: its mean epochs as a share of random search's, and the
    confirmed test accuracy minus random search's, seed by seed (mean, standard error of the mean
    of the paired differences, and the seeds both have); {} without random search."""
    if not results.get("random"):
        return {}
    base = {r["seed"]: r for r in results["random"]}
    base_epochs = statistics.fmean(r["epochs_trained"] for r in results["random"])
    out = {}
    for method, runs in results.items():
        if method == "random" or not runs:
            continue
        diffs = [r["confirmed_test"] - base[r["seed"]]["confirmed_test"] for r in runs
                 if r["seed"] in base and r.get("confirmed_test") is not None
                 and base[r["seed"]].get("confirmed_test") is not None]
        out[method] = {
            "epochs_share": statistics.fmean(r["epochs_trained"] for r in runs) / base_epochs if base_epochs else None,
            "test_difference": statistics.fmean(diffs) if diffs else None,
            "test_difference_se": statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None,
            "paired_seeds": len(diffs)}
    return out


def budget_override(text: str) -> tuple[str, float]:
    """`--budget-for METHOD=SECONDS` read as a known method and a positive number of seconds."""
    method, _, seconds = text.partition("=")
    if method not in METHODS:
        raise argparse.ArgumentTypeError(f"{text!r}: the method must be one of {', '.join(METHODS)} (e.g. asha=160)")
    try:
        value = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not METHOD=SECONDS: e.g. asha=160") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the seconds must be positive")
    return method, value


def confirm_setting(text: str) -> tuple[int, int]:
    """`--confirm TOP,REPEATS` read as two positive integers."""
    try:
        top, repeats = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not TOP,REPEATS: give two whole numbers, e.g. 3,1") from None
    if top < 1 or repeats < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: TOP and REPEATS must be at least 1")
    return top, repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1, help="the first seed (seeds N, N+1, ...)")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="FILE",
                        help="join these result files' runs (same settings) into --out instead of running")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=81)
    parser.add_argument("--configs", type=int, default=27, help="configurations per method with --budget 0")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds of search per method from its first trial start (0: --configs instead)")
    parser.add_argument("--budget-for", type=budget_override, action="append", default=[], metavar="METHOD=SECONDS",
                        help="this method's own budget instead of --budget (repeatable), e.g. asha=160")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--model", choices=sorted(BUILDS), default="pima",
                        help="pima: the comprehensive space, real training; generated: the same space on "
                        "generated_task.py's 72,000 rows (epochs of seconds); sleep: epoch_sleep_model.py (each epoch "
                        "a sleep of EPOCH_SLEEP_SECONDS, no confirmation), for utilisation on more workers than cores")
    parser.add_argument("--confirm", type=confirm_setting, default=(3, 3), metavar="TOP,REPEATS",
                        help="the confirmation stage of tunecluster's methods: the top TOP configurations retrained "
                        "REPEATS times each (default 3,3; --quick: 1,1)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="copy each tunecluster method's results.json here as NAME-SEED.json (for epoch_cost.py)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 3 epochs, 10 s budget")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out)
    if args.quick:
        args.seeds, args.max_epochs, args.configs, args.budget = 1, 3, 3, min(args.budget, 10.0)
    confirm = (1, 1) if args.quick else args.confirm
    methods = [m for m in args.methods.split(",") if m]
    results: dict[str, list] = {m: [] for m in methods}
    settings = {"machine": machine(), "command": " ".join(sys.argv), "quick": args.quick, "model": args.model,
                "epoch_sleep_seconds": float(os.environ.get("EPOCH_SLEEP_SECONDS", "0.1")) if args.model == "sleep" else None,
                "workers": args.workers, "max_epochs": args.max_epochs, "budget_s": args.budget,
                "configs": args.configs if not args.budget else None, "confirm": list(confirm)}
    budgets = dict(args.budget_for)
    if budgets:
        if not args.budget:
            parser.error("--budget-for needs a time budget: give --budget SECONDS too")
        settings["budget_s_per_method"] = {m: budgets.get(m, args.budget) for m in methods}
    with tempfile.TemporaryDirectory(prefix="tc-early-stopping-") as tmp:
        data = data_for(args.model, Path(tmp))
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for method in methods:
                load = os.getloadavg()[0]
                budget = budgets.get(method, args.budget)
                if method == "stock":
                    outcome = run_stock(Path(tmp), seed, args.max_epochs, args.workers, budget, args.model, data)
                else:
                    spec = spec_for(method, seed, args.configs, args.max_epochs, args.workers, confirm, budget,
                                    args.model, data)
                    outcome = run_method(Path(tmp), spec, args.workers, args.keep)
                results[method].append({"seed": seed, "load_before": round(load, 2), **outcome})
                print(method, seed, json.dumps(results[method][-1]), flush=True)
                save({**settings, "complete": False, "seeds": sorted({r["seed"] for rs in results.values() for r in rs}),
                      "runs": results}, args.out, "early_stopping")
    finish(settings, results, args.out)


def finish(settings: dict, results: dict[str, list], out) -> None:
    """Print the table and write the file with the summary over seeds."""
    summary = {m: summarise(runs) for m, runs in results.items()}
    table(["method", "wall s", "trials", "epochs", "util", "util in budget", "to best s", "search best", "conf. val",
           "conf. test"],
          [[m, s["wall_s"]["mean"], s["trials"]["mean"], s["epochs_trained"]["mean"], s["utilisation"]["mean"],
            s["utilisation_in_budget"]["mean"],
            s["time_to_best_s"]["mean"], s["search_best"]["mean"], s["confirmed_validation"]["mean"],
            s["confirmed_test"]["mean"]] for m, s in summary.items()])
    beside = against_random(results)
    if beside:
        table(["method", "epochs / random's", "test - random's", "SE", "seeds"],
              [[m, c["epochs_share"], c["test_difference"], c["test_difference_se"], c["paired_seeds"]]
               for m, c in beside.items()])
    save({**settings, "complete": True, "seeds": sorted({r["seed"] for rs in results.values() for r in rs}),
          "seeds_per_method": {m: sorted(r["seed"] for r in runs) for m, runs in results.items()},  # a merge may lack some
          "runs": results, "summary": summary, "against_random": beside}, out, "early_stopping")


def merge(files: list[Path], out) -> None:
    """Join the runs of files measured with the same settings (each seed once)."""
    parts = [json.loads(Path(f).read_text()) for f in files]
    for part in parts:
        part.setdefault("confirm", [3, 3])  # files written before --confirm existed used 3,3
    keys = ("model", "workers", "max_epochs", "budget_s", "budget_s_per_method", "configs", "quick", "confirm")
    for part, name in zip(parts[1:], files[1:]):
        differ = [k for k in keys if part.get(k) != parts[0].get(k)]
        if differ:
            raise SystemExit(f"{name}: its {', '.join(differ)} differ from {files[0]}'s: merge runs of one setting")
    results: dict[str, list] = {}
    for part in parts:
        for method, runs in part["runs"].items():
            known = {r["seed"] for r in results.get(method, [])}
            results.setdefault(method, []).extend(r for r in runs if r["seed"] not in known)
    settings = {k: parts[0].get(k) for k in ("machine", *keys, "epoch_sleep_seconds")}
    settings["command"] = " ; ".join(p.get("command", "") for p in parts)
    settings["merged_from"] = [str(f) for f in files]
    finish(settings, results, out)


if __name__ == "__main__":
    main()
