"""The tables a user reads: the results (best first), the roles of a running cluster, and the
Pima tutorial's claims beside what a run found. Rich tables; on a pipe or in a log file they are
printed at least 160 columns wide (`print_wide`) instead of folded to 80.
"""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.table import Table

from tunecluster.tuning.results import hp_names, sorted_rows


def print_wide(console: Console, table: Table) -> None:
    """A table on a terminal as it is; elsewhere at least 160 columns wide."""
    if console.is_terminal:
        console.print(table)
        return
    width = console.width
    console.width = max(width, 160)
    try:
        console.print(table)
    finally:
        console.width = width


def _pm(mean, std) -> str:
    if mean is None:
        return ""
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def results_table(document: dict, limit: Optional[int] = None) -> Table:
    """The trials best first: confirmed configurations by their confirmed mean, then the others."""
    names = hp_names(document)
    shown = [n for n in names if not n.startswith("tuner/")]
    mode = document.get("score_mode", "best_epoch")
    ranks, other = ("best", "last") if mode == "best_epoch" else ("last", "best")
    confirmation = document.get("confirmation") or {}
    confirmed = bool(confirmation.get("ranking"))
    executions = document.get("executions_per_trial", 1)
    ranking = (f"ranked by the confirmed mean of {confirmation.get('repeats')} retrainings"
               if confirmed else f"ranked by the {ranks}-epoch score")
    title = (f"{document['experiment']}: {document['tuner']} search, objective "
             f"{document['objective']} ({document['direction']}), {ranking}"
             + ("" if document.get("finished") else " [still running]"))
    table = Table(title=title)
    has_test = any((r.get("confirmed") or {}).get("test_mean") is not None for r in document["trials"])
    columns = ["trial", "status", "score", f"{other} epoch"]
    if executions > 1:
        columns.append(f"± std ({executions} runs)")
    if confirmed:
        columns += ["confirmed"] + (["test"] if has_test else [])
    columns += ["worker", "time (s)"]
    numeric = {c for c in columns if c.startswith(("score", "confirmed", "test", "time", "±")) or c.endswith("epoch")}
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left")
    wide = len(shown) > 5  # many hyperparameters: one folded column instead of one each
    if wide:
        table.add_column("hyperparameters", overflow="fold", ratio=1)
    else:
        for name in shown:
            table.add_column(name, overflow="fold")
    table.add_column("notes", overflow="fold")
    rows = sorted_rows(document)
    for row in rows[:limit] if limit else rows:
        score = row["score"]
        other_score = row.get(f"score_{other}_epoch")
        notes = []
        if row.get("degenerate"):
            notes.append("degenerate (one class)")
        if row.get("error_type"):
            notes.append(f"{row['error_type']}: {row['message']}"[:80])
        notes += _stop_notes(row)
        cells = [row["trial_id"], row["status"], "" if score is None else f"{score:.4f}",
                 "" if other_score is None else f"{other_score:.4f}"]
        if executions > 1:
            cells.append("" if row.get("score_std") is None else f"{row['score_std']:.4f}")
        if confirmed:
            c = row.get("confirmed") or {}
            cells.append(_pm(c.get("mean"), c.get("std")))
            if has_test:
                cells.append(_pm(c.get("test_mean"), c.get("test_std")))
        cells += [row.get("worker") or "", "" if row.get("duration_s") is None else f"{row['duration_s']:.1f}"]
        cells += ([", ".join(f"{n}={_cell(row['hyperparameters'][n])}" for n in shown
                             if n in row["hyperparameters"])] if wide
                  else [_cell(row["hyperparameters"].get(n)) for n in shown])
        table.add_row(*cells, "; ".join(notes))
    return table


def _stop_notes(row: dict) -> list[str]:
    """Stopped early, promoted from a lower rung, resumed after a take-back."""
    notes = []
    if row.get("stopped_early"):
        notes.append(f"stopped early after epoch {row['stopped_early']}")
    parent = (row.get("all_hyperparameters") or {}).get("tuner/trial_id")
    if parent:
        notes.append(f"promoted from trial {parent} (epoch {(row.get('all_hyperparameters') or {}).get('tuner/initial_epoch')})")
    resumed = [e["resumed_from"] for e in row.get("executions") or [] if e.get("resumed_from")]
    if resumed:
        notes.append(f"resumed from epoch {max(resumed)}")
    return notes


def result_notes(document: dict) -> list[str]:
    """How to read the table, and the run's warnings."""
    mode = document.get("score_mode", "best_epoch")
    lines = [(f"score: {document['objective']} at each training's best epoch (Keras Tuner's choice; optimistic, "
              "the same validation rows pick the epoch and report it); 'last epoch' is the honest "
              "end-of-training value.") if mode == "best_epoch" else
             f"score: {document['objective']} at each training's last epoch; 'best epoch' is the optimistic peak."]
    if (document.get("confirmation") or {}).get("ranking"):
        lines.append("confirmed: mean ± std of the validation score over fresh-seed retrainings after the "
                     "search; test: the same runs on the held-out rows (never used to choose).")
    lines += [f"warning: {w}" for w in document.get("warnings") or []]
    return lines


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def status_table(status, title: str) -> Table:
    """One row per role: its state, where it runs, and the trial and epoch it is on."""
    table = Table(title=title)
    for column in ("role", "tuner id", "state", "exit code", "restarts", "where", "trial", "epoch"):
        table.add_column(column)
    workers = status.progress.get("workers") or {}
    for role in status.roles:
        w = workers.get(role.tuner_id, {})
        state = role.state + (" (given up)" if role.given_up else "")
        where = ", ".join(str(x) for x in (f"pid {role.pid}" if role.pid else None, role.instance, role.host) if x)
        table.add_row(role.name, role.tuner_id, state, "" if role.exit_code is None else str(role.exit_code),
                      str(role.restarts), where, str(w.get("trial") or ""), str(w.get("epoch") or ""))
    return table


def phase_table(title: str, rows: list[dict]) -> Table:
    """`up --example pima-all`: each of the tutorial's claims beside what this run measured."""
    table = Table(title=title)
    for column in ("claim", "the tutorial reports", "this run (winner = best confirmed)", "agrees",
                   "difference", "beyond confirmed spread", "test", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["row"], row["claim"], row["this_run"], row["agrees"], row["difference"],
                      row["beyond_spread"], row["test"], row["note"])
    return table
