"""One row per tutorial phase for `up --example pima-all`: the tutorial's claim beside what the run
found (the best confirmed configuration, its confirmed mean ± std, the search's own best score, the
test score when rows were held out). Reads each phase's results.json; pure Python.
"""

from __future__ import annotations

from tunecluster.core.rundir import RunDir, read_json


def _pm(mean, std) -> str:
    if mean is None:
        return ""
    return f"{mean:.3f} ± {std or 0.0:.3f}"


def _values(row: dict) -> str:
    hps = {k: v for k, v in row["hyperparameters"].items() if not k.startswith("tuner/")}
    if len(hps) > 4:
        keep = {k: v for k, v in hps.items() if k in ("num_layers", "optimizer")}
        return ", ".join(f"{k}={v}" for k, v in keep.items()) + f" (+{len(hps) - len(keep)} more)"
    return ", ".join(f"{k}={v}" for k, v in hps.items())


def phase_summary(name: str, run: RunDir, code: int, claim: dict) -> dict:
    claimed = claim.get("winner") or ""
    if claim.get("score") is not None:
        claimed += f", ~{claim['score']:.2f}"
    row = {"phase": name, "claim": claimed, "winner": "", "confirmed": "", "search_score": "", "test": "",
           "note": "", "run": str(run.root), "exit_code": code}
    document = read_json(run.results_json)
    if not document:
        row["note"] = "did not run" if code == 0 else f"failed (exit {code})"
        return row
    by_id = {t["trial_id"]: t for t in document["trials"]}
    scores = [t["score"] for t in document["trials"] if t["status"] == "COMPLETED" and t["score"] is not None]
    if scores:
        best_search = max(scores) if document.get("direction", "max") == "max" else min(scores)
        row["search_score"] = f"{best_search:.3f}"
    winner = by_id.get(document.get("best_trial") or "")
    if winner is not None:
        row["winner"] = _values(winner)
        confirmed = winner.get("confirmed") or {}
        row["confirmed"] = _pm(confirmed.get("mean"), confirmed.get("std"))
        row["test"] = _pm(confirmed.get("test_mean"), confirmed.get("test_std"))
        row["winner_hyperparameters"] = winner["hyperparameters"]
    notes = []
    if (document.get("confirmation") or {}).get("overlap"):
        notes.append("top configurations not distinguishable")
    if code != 0:
        notes.append(f"failed (exit {code})")
    row["note"] = "; ".join(notes)
    return row
