"""What the report shows, read from a run directory and computed once (pure Python, no plotting,
no TensorFlow): the trials of `results.json`, the search space from Keras Tuner's `oracle.json`,
each trial's metrics from its `trial.json`, the best-so-far curves, the per-worker timeline and
the measured worker utilisation.

Works on a finished run and on a running one (a running trial's bar ends at the chief's last
write of `progress.json`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from tunecluster.core.rundir import RunDir, read_json
from tunecluster.tuning.results import SCORED, read_results, sorted_rows


@dataclass
class HyperParameter:
    """One hyperparameter as the search declared it: numeric (int/float) or categorical."""

    name: str
    kind: str  # "int" | "float" | "choice" | "boolean" | "fixed" | "unknown"
    values: list = field(default_factory=list)  # the choices (categorical)
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    log: bool = False

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")


@dataclass
class Interval:
    """One trial on one worker, in seconds since the search started."""

    worker: str
    trial_id: str
    status: str
    start: float
    end: float
    score: Optional[float]


@dataclass
class RunData:
    root: Path
    experiment: str
    tuner: str
    objective: str
    direction: str
    max_trials: Optional[int]
    finished: bool
    trials: list[dict]  # results.json rows, id order, each with "metrics" (at its best step)
    hyperparameters: list[HyperParameter]  # user hyperparameters (not Keras Tuner's tuner/*)
    t0: Optional[float]  # epoch seconds of the first trial's start
    now: float  # epoch seconds the run was last seen alive (its end when finished)
    best: Optional[dict] = None
    exported: Optional[dict] = None  # best/metrics.json
    warnings: list[str] = field(default_factory=list)  # the run's warnings (results.json)
    confirmation: dict = field(default_factory=dict)  # the confirmation stage (results.json)
    score_mode: str = "best_epoch"

    @property
    def completed(self) -> list[dict]:
        return [t for t in self.trials if t["status"] in SCORED and t["score"] is not None]

    @property
    def hp_names(self) -> list[str]:
        return [hp.name for hp in self.hyperparameters]

    def sorted_rows(self) -> list[dict]:
        return sorted_rows({"direction": self.direction, "trials": self.trials,
                            "confirmation": self.confirmation})


def _ts(iso: Optional[str]) -> Optional[float]:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _id_key(trial_id: str):
    return (0, int(trial_id), "") if str(trial_id).isdigit() else (1, 0, str(trial_id))


def _space(run: RunDir, experiment: str) -> dict[str, HyperParameter]:
    """The declared hyperparameters (oracle.json's space), by name."""
    oracle = read_json(run.kt_project(experiment) / "oracle.json") or {}
    space = {}
    for entry in (oracle.get("hyperparameters") or {}).get("space", []):
        config = entry.get("config", {})
        name = config.get("name")
        cls = entry.get("class_name", "").lower()
        if not name:
            continue
        if cls == "choice":
            space[name] = HyperParameter(name, "choice", values=list(config.get("values") or []))
        elif cls in ("int", "float"):
            space[name] = HyperParameter(name, cls, min_value=config.get("min_value"),
                                         max_value=config.get("max_value"),
                                         log=config.get("sampling") == "log")
        elif cls == "boolean":
            space[name] = HyperParameter(name, "boolean", values=[False, True])
        elif cls == "fixed":
            space[name] = HyperParameter(name, "fixed", values=[config.get("value")])
    return space


def _infer(name: str, observed: list) -> HyperParameter:
    """A hyperparameter the space does not describe: numeric if every value is a number."""
    present = [v for v in observed if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        kind = "int" if all(isinstance(v, int) for v in present) else "float"
        return HyperParameter(name, kind, min_value=min(present), max_value=max(present))
    values = sorted({v for v in present}, key=str)
    return HyperParameter(name, "choice", values=values)


def trial_metrics(run: RunDir, experiment: str, trial: dict) -> dict[str, float]:
    """Each metric of a trial at its best step (else its last), from Keras Tuner's trial.json."""
    saved = read_json(run.kt_project(experiment) / f"trial_{trial['trial_id']}" / "trial.json") or {}
    metrics = ((saved.get("metrics") or {}).get("metrics")) or {}
    best_step = trial.get("best_step", saved.get("best_step"))
    out = {}
    for name, history in metrics.items():
        observations = history.get("observations") or []
        if not observations:
            continue
        chosen = next((o for o in observations if o.get("step") == best_step), observations[-1])
        value = chosen.get("value")
        value = value[0] if isinstance(value, list) and value else value
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
    return out


def load_run(root: str | Path) -> RunData:
    """Everything the report needs from one run directory."""
    run = RunDir(root).require_run()
    document = read_results(run)
    experiment = document["experiment"]
    trials = sorted(document["trials"], key=lambda t: _id_key(t["trial_id"]))
    for trial in trials:
        trial["metrics"] = trial_metrics(run, experiment, trial) if trial["status"] in SCORED else {}

    space = _space(run, experiment)
    names: list[str] = []
    for trial in trials:
        for name in trial["hyperparameters"]:
            if name not in names and not name.startswith("tuner/"):
                names.append(name)
    ordered = [n for n in space if n in names] + [n for n in names if n not in space]
    hps = [space.get(n) or _infer(n, [t["hyperparameters"].get(n) for t in trials]) for n in ordered]

    starts = [_ts(t.get("started")) for t in trials if t.get("started")]
    ends = [_ts(t.get("ended")) for t in trials if t.get("ended")]
    finished = bool(document.get("finished"))
    now = max(ends) if ends else time.time()
    if not finished or any(t["status"] == "RUNNING" for t in trials):
        seen = [run.progress, run.results_json]
        now = max([now] + [p.stat().st_mtime for p in seen if p.exists()])
    best_id = document.get("best_trial")
    best = next((t for t in trials if t["trial_id"] == best_id), None)
    return RunData(
        root=run.root, experiment=experiment, tuner=document.get("tuner", "?"),
        objective=document.get("objective", "score"), direction=document.get("direction", "max"),
        max_trials=document.get("max_trials"), finished=finished, trials=trials, hyperparameters=hps,
        t0=min(starts) if starts else None, now=now, best=best, exported=read_json(run.best_metrics),
        warnings=list(document.get("warnings") or []), confirmation=document.get("confirmation") or {},
        score_mode=document.get("score_mode", "best_epoch"),
    )


def best_so_far(data: RunData) -> dict[str, list]:
    """The running best score by trial number (id order) and by wall time (trial end)."""
    better = max if data.direction == "max" else min

    def running(scores):
        out, current = [], None
        for score in scores:
            current = score if current is None else better(current, score)
            out.append(current)
        return out

    by_id = data.completed
    by_end = sorted((t for t in by_id if t.get("ended")), key=lambda t: _ts(t["ended"]))
    return {
        "number": [i + 1 for i, t in enumerate(data.trials) if t in by_id],
        "number_ids": [t["trial_id"] for t in by_id],
        "number_scores": [t["score"] for t in by_id],
        "number_best": running([t["score"] for t in by_id]),
        "time_s": [round(_ts(t["ended"]) - data.t0, 3) for t in by_end] if data.t0 else [],
        "time_ids": [t["trial_id"] for t in by_end],
        "time_scores": [t["score"] for t in by_end],
        "time_best": running([t["score"] for t in by_end]),
    }


def timeline(data: RunData) -> list[Interval]:
    """Each trial that started, as a bar on its worker (a running one ends at `data.now`)."""
    bars = []
    for trial in data.trials:
        start = _ts(trial.get("started"))
        if start is None or data.t0 is None:
            continue
        end = _ts(trial.get("ended")) or data.now
        bars.append(Interval(trial.get("worker") or "?", trial["trial_id"], trial["status"],
                             start - data.t0, max(end, start) - data.t0, trial.get("score")))
    return bars


def workers(data: RunData) -> list[str]:
    names = {bar.worker for bar in timeline(data)}
    return sorted(names, key=lambda n: (len(n), n))


def utilisation(data: RunData) -> dict[str, Any]:
    """Busy time over available time per worker. Available: from the search's first trial start
    to its last trial end (now, while it runs), the same window for every worker, so idle gaps,
    slow starts and early exits all count against the worker."""
    bars = timeline(data)
    window = max((b.end for b in bars), default=0.0)
    per_worker = {}
    for name in workers(data):
        spans = sorted((b.start, b.end) for b in bars if b.worker == name)
        busy, cursor = 0.0, 0.0
        for start, end in spans:  # union of intervals: overlaps (a requeued trial) count once
            start = max(start, cursor)
            if end > start:
                busy += end - start
                cursor = end
        per_worker[name] = {
            "busy_s": round(busy, 3), "available_s": round(window, 3),
            "utilisation": round(busy / window, 4) if window > 0 else None,
            "trials": len(spans),
        }
    values = [w["utilisation"] for w in per_worker.values() if w["utilisation"] is not None]
    return {"window_s": round(window, 3), "workers": per_worker,
            "mean": round(sum(values) / len(values), 4) if values else None}
