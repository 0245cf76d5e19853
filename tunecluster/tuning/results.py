"""Results of a search: one row per trial, written as results.json and results.csv, and read back
for `tunecluster results` (table, JSON or CSV).

A row holds the trial id, status, hyperparameters, score, the worker that ran it, start and end
times, and the error type and message when it failed. Its `hyperparameters` are those the trial's
trainings read (`active`, recorded by the workers); `all_hyperparameters` keeps every value Keras
Tuner gave it (a Pima model with one layer reads `units_0`, not `units_1 ... units_9`). With
tunecluster workers a row also holds each
execution's seed, worker and scores, the score at the best and at the last epoch (the spec's
`tuner.score` says which one ranks), their spread, a `degenerate` flag (the predictions collapsed to
one class), and the confirmation stage's retrainings (confirmed mean ± std on validation, test
mean). The document ranks confirmed configurations first, by their confirmed mean. Pure Python (no TensorFlow): the chief
writes these files after every trial.
"""

from __future__ import annotations

import csv as csv_module
import io
import json
import math
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from tunecluster.core.rundir import RunDir, read_json, write_atomic, write_json
from tunecluster.core.errors import UsageError
from tunecluster.core.pacing import pause_point

STATUSES = ("COMPLETED", "STOPPED_EARLY", "RUNNING", "QUEUED", "FAILED", "INVALID", "STOPPED", "IDLE")
SCORED = ("COMPLETED", "STOPPED_EARLY")  # trials with a score (a stopped one: the value it reached)


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


def active_values(values: dict, read: Optional[list]) -> dict:
    """A trial's values of the hyperparameters its training read (and Keras Tuner's own
    `tuner/...` values, which Hyperband sets); all of them when what was read is not known (a
    stock Keras Tuner worker, a trial still running)."""
    if read is None:
        return dict(values)
    names = set(read)
    return {k: v for k, v in values.items() if k in names or k.startswith("tuner/")}


def active_names(units) -> Optional[list]:
    """What a trial's trainings read from its hyperparameters (the first finished one's record)."""
    for unit in units:
        if unit.result and unit.result.get("active") is not None:
            return list(unit.result["active"])
    return None


def best_trial_summary(oracle, active_of: Callable[[str], Optional[list]] = lambda trial_id: None) -> Optional[dict]:
    completed = [t for t in list(oracle.trials.values()) if t.status == "COMPLETED" and t.score is not None]
    if not completed:
        return None
    # the first of equal scores, as Keras Tuner's stable sort in get_best_trials
    pick = max if oracle.objective.direction == "max" else min
    best = pick(completed, key=lambda t: t.score)
    return {"trial_id": best.trial_id, "score": _clean(best.score),
            "hyperparameters": _user_values(active_values(best.hyperparameters.values, active_of(best.trial_id)))}


def _executions(work, trial_id: str, objective: str) -> tuple[list[dict], dict]:
    from tunecluster.tuning import scoring

    units = work.board.of_trial(trial_id) if work is not None else []
    rows = []
    for unit in units:
        result = unit.result or {}
        rows.append({"index": unit.index, "seed": unit.seed, "worker": unit.worker, "state": unit.state,
                     "score_best_epoch": _clean(scoring.unit_score(result, objective, "best_epoch")),
                     "score_last_epoch": _clean(scoring.unit_score(result, objective, "last_epoch")),
                     "best_epoch": result.get("best_epoch"), "degenerate": result.get("degenerate"),
                     "duration_s": result.get("duration_s"), "timing": result.get("timing"),
                     "saved_weights": bool(result.get("weights")), "error": unit.error,
                     "stopped_early": result.get("stopped_early"), "resumed_from": result.get("resumed_from"),
                     "promoted_from": result.get("promoted_from"),
                     "curve": [_clean_metrics(m) for m in unit.curve]})
    done = [u.result for u in units if u.result]
    summary = {}
    if done and work is not None:
        spec = work.spec.tuner
        summary = scoring.aggregate_executions(done, objective, spec.score, spec.direction)
    return rows, summary


def results_document(spec, oracle, trial_meta: dict, finished: bool, work=None,
                     rows_cache: Optional[dict] = None, row_texts: Optional[list] = None) -> dict:
    """The content of results.json, from the oracle's trials and the chief's bookkeeping.

    `rows_cache` (the chief's, kept between its writes): a trial's row is built again only when
    something it shows changed (status, score, bookkeeping, executions); the rows of ended trials
    are otherwise reused, and so is their JSON text: with `row_texts` (a list, filled with each
    row's compact JSON in order, for `write_results`), a write encodes only the rows that changed."""
    rows = []
    confirmed = {r["trial_id"]: r for r in work.confirmed_ranking()} if work is not None else {}
    degenerate = set(work.degenerate_trials()) if work is not None else set()
    queued = set(getattr(oracle, "queued", ()))
    for trial_id in sorted(oracle.trials, key=lambda t: (len(t), t)):
        pause_point()
        trial = oracle.trials[trial_id]
        meta = trial_meta.get(trial_id, {})
        units = work.board.of_trial(trial_id) if work is not None else []
        status = trial.status
        if status == "RUNNING" and trial_id in queued:
            status = "QUEUED"  # taken back from a lost worker (lease expired, released), waiting for the next
        key = (status, trial.score, trial.best_step, trial.message, id(trial.hyperparameters),
               len(trial.hyperparameters.values), tuple(sorted(meta.items())),
               tuple((u.key, u.state, u.worker, id(u.result), u.error, len(u.curve), u.stop_at) for u in units))
        cached = rows_cache.get(trial_id) if rows_cache is not None else None
        if cached is None or cached[0] != key:
            cached = (key, _row(spec, trial, trial_id, status, meta, work), [None])
            if rows_cache is not None:
                rows_cache[trial_id] = cached
        row = dict(cached[1])
        row["degenerate"] = trial_id in degenerate
        row["confirmed"] = _confirmed_row(confirmed.get(trial_id))
        rows.append(row)
        if row_texts is not None:
            if cached[2][0] is None:  # the unchanged part's text, encoded once
                cached[2][0] = json.dumps(cached[1], default=str)[:-1]
            tail = json.dumps({"degenerate": row["degenerate"], "confirmed": row["confirmed"]}, default=str)
            row_texts.append(cached[2][0] + ", " + tail[1:])
    best = best_trial_summary(oracle)
    return {
        "experiment": spec.name,
        "tuner": spec.tuner.kind,
        "objective": spec.tuner.objective,
        "direction": spec.tuner.direction,
        "max_trials": oracle.max_trials,
        "finished": finished,
        "best_trial": _best_trial(best, confirmed),
        "search_best_trial": best["trial_id"] if best else None,
        "score_mode": spec.tuner.score,
        "executions_per_trial": spec.tuner.executions_per_trial,
        "confirmation": _confirmation(spec, work, confirmed),
        "warnings": list(work.warnings) if work is not None else [],
        "trials": rows,
    }


def _row(spec, trial, trial_id: str, status: str, meta: dict, work) -> dict:
    message = meta.get("message") or trial.message
    executions, summary = _executions(work, trial_id, spec.tuner.objective)
    # who ran it: the workers of its finished executions (a unit taken back from a lost worker
    # counts for the worker that finished it), else whoever holds it now
    workers = (sorted({e["worker"] for e in executions if e["worker"] and e["state"] == "done"})
               or sorted({e["worker"] for e in executions if e["worker"]}))
    values = dict(trial.hyperparameters.values)
    read = active_names(work.board.of_trial(trial_id)) if work is not None else None
    stopped = max([e["stopped_early"] for e in executions if e["stopped_early"]], default=None)
    if status == "COMPLETED" and stopped:
        status = "STOPPED_EARLY"  # (COMPLETED for Keras Tuner's oracle: it learns from the value reached)
    return {
        "trial_id": trial_id,
        "status": status,
        "score": _clean(trial.score),
        "best_step": trial.best_step,
        "hyperparameters": active_values(values, read),  # those its trainings read
        "all_hyperparameters": values,  # every value Keras Tuner gave the trial
        "active": read,  # the names its trainings read (None: not known)
        "worker": ", ".join(workers) if workers else meta.get("worker"),
        "started": _iso(meta.get("started")),
        "ended": _iso(meta.get("ended")),
        "duration_s": (round(meta["ended"] - meta["started"], 3)
                       if meta.get("ended") and meta.get("started") else None),
        "error_type": meta.get("error_type"),
        "message": message,
        "requeues": meta.get("requeues", 0),
        "score_best_epoch": _clean(summary.get("score_best_epoch")),
        "score_last_epoch": _clean(summary.get("score_last_epoch")),
        "score_std": _clean(summary.get("score_std")),
        "executions": executions,
        "stopped_early": stopped,  # the last epoch trained when the chief stopped it early
        "curve": _objective_curve(executions, spec.tuner.objective),
        # "degenerate" and "confirmed" come last, set per write (results_document)
    }


def _clean_metrics(metrics: Optional[dict]) -> Optional[dict]:
    return None if metrics is None else {k: _clean(v) for k, v in metrics.items()}


def _objective_curve(executions: list[dict], objective: str) -> list:
    """The objective at each epoch, the executions' mean (what the live view and report draw)."""
    length = max((len(e["curve"]) for e in executions), default=0)
    out = []
    for i in range(length):
        values = [e["curve"][i][objective] for e in executions if len(e["curve"]) > i and e["curve"][i]
                  and e["curve"][i].get(objective) is not None]
        out.append(round(sum(values) / len(values), 6) if values else None)
    return out


def _best_trial(search_best: Optional[dict], confirmed: dict) -> Optional[str]:
    """The best confirmed configuration when the confirmation stage ran, else the search's best."""
    ranked = [t for t, r in confirmed.items() if r.get("mean") is not None]
    if ranked:
        return ranked[0]  # confirmed_ranking() is sorted best first
    return search_best["trial_id"] if search_best else None


def _confirmed_row(entry: Optional[dict]) -> Optional[dict]:
    if not entry:
        return None
    return {"mean": _clean(entry["mean"]), "std": _clean(entry["std"]), "runs": entry["runs"],
            "failed": entry["failed"], "scores": [_clean(s) for s in entry["scores"]],
            "test_mean": _clean(entry["test_mean"]), "test_std": _clean(entry["test_std"]),
            "best_run": (entry["best_run"] or {}).get("index")}


def _confirmation(spec, work, confirmed: dict) -> Optional[dict]:
    if work is None or not work.board.confirm_started:
        return {"enabled": bool(work is not None and work.confirm_enabled), "stage": "pending"
                if work is not None and work.confirm_enabled else "off",
                "top": spec.confirm.top, "repeats": spec.confirm.repeats, "ranking": []}
    from tunecluster.tuning.scoring import intervals_overlap

    ranking = work.confirmed_ranking()
    return {"enabled": True, "stage": work.stage(), "top": spec.confirm.top, "repeats": spec.confirm.repeats,
            "ranking": [r["trial_id"] for r in ranking],
            "overlap": intervals_overlap(ranking) if work.board.confirmation_done() else None}


def write_results(run: RunDir, document: dict, final: bool = True, compact: Optional[bool] = None,
                  row_texts: Optional[list[str]] = None, csv: bool = True) -> None:
    """`final=False` (the chief's periodic writes during the search): compact JSON, no fsync.
    Compact results are encoded row by row (`row_texts`: the rows' JSON made by `results_document`);
    `csv=False` leaves results.csv for a later write."""
    write_json(run.results_json, document, compact=not final if compact is None else compact, fsync=final,
               long_list="trials", items=row_texts)
    if csv or final:
        write_atomic(run.results_csv, to_csv(document), fsync=final)


def read_results(run: RunDir) -> dict:
    document = read_json(run.results_json)
    if document is None:
        raise UsageError(
            f"{run.results_json} not found: the search has not recorded any trial yet "
            "(is --dir the folder `tunecluster up` used?)"
        )
    return document


def hp_names(document: dict) -> list[str]:
    names: dict[str, None] = {}  # first-seen order
    for row in document["trials"]:
        pause_point()
        names.update(dict.fromkeys(row["hyperparameters"]))
    return list(names)


CSV_COLUMNS = ("trial_id", "status", "score", "score_best_epoch", "score_last_epoch", "score_std",
               "degenerate", "worker", "started", "ended", "duration_s", "requeues", "error_type", "message")
CONFIRMED_COLUMNS = ("mean", "std", "runs", "test_mean", "test_std")


def to_csv(document: dict) -> str:
    names = hp_names(document)
    buffer = io.StringIO()
    writer = csv_module.writer(buffer)
    writer.writerow(list(CSV_COLUMNS) + [f"confirmed_{c}" for c in CONFIRMED_COLUMNS] + [f"hp.{n}" for n in names])
    for row in document["trials"]:
        pause_point()
        message = (row.get("message") or "").strip().splitlines()
        confirmed = row.get("confirmed") or {}
        writer.writerow(
            [row.get(c) if c != "message" else (message[-1] if message else "") for c in CSV_COLUMNS]
            + [confirmed.get(c, "") for c in CONFIRMED_COLUMNS]
            + [row["hyperparameters"].get(n, "") for n in names]
        )
    return buffer.getvalue()


def sorted_rows(document: dict) -> list[dict]:
    """Confirmed configurations first (by confirmed mean), then completed trials best first, then
    the others in id order."""
    reverse = document.get("direction", "max") == "max"
    ranking = (document.get("confirmation") or {}).get("ranking") or []
    by_id = {r["trial_id"]: r for r in document["trials"]}
    confirmed = [by_id[t] for t in ranking if t in by_id and (by_id[t].get("confirmed") or {}).get("mean") is not None]
    placed = {id(r) for r in confirmed}  # by identity: `r in list` compared whole rows, O(trials^2)
    done = [r for r in document["trials"] if r["status"] in SCORED and r["score"] is not None
            and id(r) not in placed]
    placed.update(id(r) for r in done)
    rest = [r for r in document["trials"] if id(r) not in placed]
    done.sort(key=lambda r: r["score"], reverse=reverse)
    return confirmed + done + rest
