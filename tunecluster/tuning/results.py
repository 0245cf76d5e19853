"""Results of a search: one row per trial, written as results.json and results.csv, and read back
for `tunecluster results` (table, JSON or CSV).

A row holds the trial id, status, hyperparameters, score, the worker that ran it, start and end
times, and the error type and message when it failed. Pure Python (no TensorFlow): the chief
writes these files after every trial.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timezone
from typing import Any, Optional

from tunecluster.cluster.rundir import RunDir, read_json, write_atomic, write_json
from tunecluster.errors import UsageError

STATUSES = ("COMPLETED", "RUNNING", "QUEUED", "FAILED", "INVALID", "STOPPED", "IDLE")


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def count_statuses(trials) -> dict:
    counts = {status.lower(): 0 for status in ("COMPLETED", "RUNNING", "FAILED", "INVALID")}
    for trial in trials:
        key = str(trial.status).lower()
        counts[key] = counts.get(key, 0) + 1
    counts["total"] = len(trials)
    return counts


def _user_values(hp_values: dict) -> dict:
    return {k: v for k, v in hp_values.items() if not k.startswith("tuner/")}


def best_trial_summary(oracle) -> Optional[dict]:
    completed = [t for t in oracle.trials.values() if t.status == "COMPLETED" and t.score is not None]
    if not completed:
        return None
    reverse = oracle.objective.direction == "max"
    best = sorted(completed, key=lambda t: t.score, reverse=reverse)[0]
    return {"trial_id": best.trial_id, "score": _clean(best.score),
            "hyperparameters": _user_values(best.hyperparameters.values)}


def results_document(spec, oracle, trial_meta: dict, finished: bool) -> dict:
    """The content of results.json, from the oracle's trials and the chief's bookkeeping."""
    rows = []
    queued = set(getattr(oracle, "_retry_queue", ()))
    for trial_id in sorted(oracle.trials, key=lambda t: (len(t), t)):
        trial = oracle.trials[trial_id]
        meta = trial_meta.get(trial_id, {})
        message = meta.get("message") or trial.message
        status = trial.status
        if status == "RUNNING" and trial_id in queued:
            status = "QUEUED"  # taken back from a worker (lease expired, released), waiting for the next
        rows.append({
            "trial_id": trial_id,
            "status": status,
            "score": _clean(trial.score),
            "best_step": trial.best_step,
            "hyperparameters": dict(trial.hyperparameters.values),
            "worker": meta.get("worker"),
            "started": _iso(meta.get("started")),
            "ended": _iso(meta.get("ended")),
            "duration_s": (round(meta["ended"] - meta["started"], 3)
                           if meta.get("ended") and meta.get("started") else None),
            "error_type": meta.get("error_type"),
            "message": message,
            "requeues": meta.get("requeues", 0),
        })
    best = best_trial_summary(oracle)
    return {
        "experiment": spec.name,
        "tuner": spec.tuner.kind,
        "objective": spec.tuner.objective,
        "direction": spec.tuner.direction,
        "max_trials": oracle.max_trials,
        "finished": finished,
        "best_trial": best["trial_id"] if best else None,
        "trials": rows,
    }


def write_results(run: RunDir, document: dict) -> None:
    write_json(run.results_json, document)
    write_atomic(run.results_csv, to_csv(document))


def read_results(run: RunDir) -> dict:
    document = read_json(run.results_json)
    if document is None:
        raise UsageError(
            f"{run.results_json} not found: the search has not recorded any trial yet "
            "(is --dir the folder `tunecluster up` used?)"
        )
    return document


def hp_names(document: dict) -> list[str]:
    names: list[str] = []
    for row in document["trials"]:
        for name in row["hyperparameters"]:
            if name not in names:
                names.append(name)
    return names


CSV_COLUMNS = ("trial_id", "status", "score", "worker", "started", "ended", "duration_s", "requeues",
               "error_type", "message")


def to_csv(document: dict) -> str:
    names = hp_names(document)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(list(CSV_COLUMNS) + [f"hp.{n}" for n in names])
    for row in document["trials"]:
        message = (row.get("message") or "").strip().splitlines()
        writer.writerow(
            [row.get(c) if c != "message" else (message[-1] if message else "") for c in CSV_COLUMNS]
            + [row["hyperparameters"].get(n, "") for n in names]
        )
    return buffer.getvalue()


def sorted_rows(document: dict) -> list[dict]:
    """Completed trials best first, then the others in id order."""
    reverse = document.get("direction", "max") == "max"
    done = [r for r in document["trials"] if r["status"] == "COMPLETED" and r["score"] is not None]
    rest = [r for r in document["trials"] if r not in done]
    done.sort(key=lambda r: r["score"], reverse=reverse)
    return done + rest
