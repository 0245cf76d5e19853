"""The rows of `up --example pima-all`'s table: each claim of the Pima tutorial (`examples/tutorial.py`)
beside what this run measured, whether the run agrees, and whether the difference is beyond the
confirmed spread. Reads each phase's results.json; pure Python.

The confirmed spread of a configuration is its mean ± std over the confirmation stage's
retrainings (the same intervals `results` compares). Per kind of claim:

- winner (the tutorial's best optimizer / units / depth): agrees when this run's best confirmed
  configuration has the claimed value. The difference is between the winner's confirmed mean and
  that of the best confirmed configuration on the other side (the claimed value when the run
  disagrees, the runner-up with another value when it agrees); it is beyond the spread when the two
  intervals do not overlap. Not measured when the other side was not confirmed.
- score (~0.85 for the tuned model, ~0.70 for the baseline): the difference is the confirmed mean
  minus the claimed figure, beyond the spread when larger than the std (or than half a unit of the
  figure's last digit, the tutorial's own rounding, when the std is smaller); agrees when it is not.
- improvement (15 points over the baseline): the tuned winner's confirmed mean minus the baseline's,
  against 0.15, with the two stds combined (root of the sum of squares) as the spread.
- dropout (0.2-0.4): agrees when every dropout the tuned winner used lies in that range; the
  difference is between the best confirmed configurations with all dropouts in and some out of it.
"""

from __future__ import annotations

import math
from typing import Optional

from tunecluster.core.rundir import RunDir, read_json

NOT_MEASURED = "not measured"


def _pm(mean, std) -> str:
    if mean is None:
        return ""
    return f"{mean:.3f} ± {std or 0.0:.3f}"


def _values(hps: dict) -> str:
    hps = {k: v for k, v in hps.items() if not k.startswith("tuner/")}
    if len(hps) > 4:
        keep = {k: v for k, v in hps.items() if k in ("num_layers", "optimizer")}
        if not keep:
            return f"{len(hps)} values"
        return ", ".join(f"{k}={v}" for k, v in keep.items()) + f" (+{len(hps) - len(keep)} more)"
    return ", ".join(f"{k}={v}" for k, v in hps.items())


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def phase_outcome(name: str, run: RunDir, code: int, seconds: Optional[float] = None) -> dict:
    """One phase's run, read back: its winner (the best confirmed configuration, else the search's
    best), the confirmed configurations best first, the search's best score."""
    document = read_json(run.results_json) or {}
    spec = _spec(run)
    trials = document.get("trials") or []
    by_id = {t["trial_id"]: t for t in trials}
    ranking = (document.get("confirmation") or {}).get("ranking") or []
    confirmed = [by_id[t] for t in ranking if t in by_id and (by_id[t].get("confirmed") or {}).get("mean") is not None]
    scores = [t["score"] for t in trials if t["status"] == "COMPLETED" and t["score"] is not None]
    best_search = None
    if scores:
        best_search = max(scores) if document.get("direction", "max") == "max" else min(scores)
    return {"phase": name, "run": str(run.root), "exit_code": code, "seconds": seconds, "ran": bool(document),
            "winner": by_id.get(document.get("best_trial") or ""), "confirmed": confirmed,
            "search_score": best_search, "trials": trials,
            "carried": dict(spec.hypermodel_args) if spec else {},
            "budget": (spec.tuner.max_trials, spec.fit.epochs) if spec else None,
            "overlap": bool((document.get("confirmation") or {}).get("overlap"))}


def _spec(run: RunDir):
    """The spec the phase ran with (None: no run there)."""
    from tunecluster.core.errors import UsageError
    from tunecluster.tuning.spec import load_spec

    try:
        return load_spec(run.spec) if run.spec.is_file() else None
    except UsageError:
        return None


def _confirmed(trial: Optional[dict]) -> tuple[Optional[float], Optional[float]]:
    c = (trial or {}).get("confirmed") or {}
    return c.get("mean"), c.get("std")


def _overlap(a: dict, b: dict) -> bool:
    (ma, sa), (mb, sb) = _confirmed(a), _confirmed(b)
    return ma - (sa or 0.0) <= mb + (sb or 0.0) and mb - (sb or 0.0) <= ma + (sa or 0.0)


def _this_run(outcome: dict) -> str:
    winner = outcome["winner"]
    if winner is None:
        return ""
    parts = [_values(winner["hyperparameters"])]
    if outcome.get("carried"):
        parts.append("carried " + ", ".join(f"{k}={v}" for k, v in outcome["carried"].items()))
    mean, std = _confirmed(winner)
    if mean is not None:
        parts.append(f"confirmed {_pm(mean, std)}")
    if outcome["search_score"] is not None:
        parts.append(f"search {outcome['search_score']:.3f}")
    return "; ".join(p for p in parts if p)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), abs_tol=1e-9)
    return a == b


def _check_winner(claim: dict, outcome: dict) -> dict:
    name, value = claim["hyperparameter"], claim["value"]
    winner = outcome["winner"]
    found = winner["hyperparameters"].get(name)
    agrees = _same(found, value)
    notes = []
    if agrees:
        other = next((t for t in outcome["confirmed"] if not _same(t["hyperparameters"].get(name), value)), None)
        missing = f"no configuration with another {name} was confirmed"
    else:
        other = next((t for t in outcome["confirmed"] if _same(t["hyperparameters"].get(name), value)), None)
        missing = f"{name}={value} was not among the confirmed configurations"
    row = {"agrees": "yes" if agrees else "no", "difference": "", "beyond_spread": NOT_MEASURED}
    if other is not None and _confirmed(winner)[0] is not None:
        diff = _confirmed(winner)[0] - _confirmed(other)[0]
        row["difference"] = _signed(diff)
        row["beyond_spread"] = "no" if _overlap(winner, other) else "yes"
        notes.append(f"against {name}={other['hyperparameters'].get(name)} ({_pm(*_confirmed(other))})")
    else:
        notes.append(missing)
    if claim.get("score") is not None:
        claimed = next((t for t in outcome["confirmed"] if _same(t["hyperparameters"].get(name), value)), None)
        if claimed is not None:
            mean, std = _confirmed(claimed)
            beyond = abs(mean - claim["score"]) > max(std or 0.0, claim.get("tolerance", 0.0))
            notes.append(f"{name}={value} confirmed {_pm(mean, std)} against the tutorial's {claim['score']:.3f}"
                         f" ({'beyond' if beyond else 'within'} its spread)")
    if claim.get("others"):
        best: dict = {}
        for trial in outcome["trials"]:
            v = trial["hyperparameters"].get(name)
            if trial["status"] == "COMPLETED" and trial["score"] is not None and v is not None:
                best[v] = max(best.get(v, trial["score"]), trial["score"])
        order = sorted(best, key=lambda v: -best[v])
        notes.append("search's best per value: " + ", ".join(f"{v} {best[v]:.3f}" for v in order))
    row["note"] = "; ".join(notes)
    return row


def _check_score(claim: dict, outcome: dict) -> dict:
    mean, std = _confirmed(outcome["winner"])
    if mean is None:
        return {"agrees": NOT_MEASURED, "difference": "", "beyond_spread": NOT_MEASURED,
                "note": "no confirmed score (confirmation off or failed)"}
    diff = mean - claim["score"]
    beyond = abs(diff) > max(std or 0.0, claim.get("tolerance", 0.0))
    return {"agrees": "no" if beyond else "yes", "difference": _signed(diff),
            "beyond_spread": "yes" if beyond else "no", "note": ""}


def _check_improvement(claim: dict, tuned: dict, baseline: Optional[dict]) -> dict:
    (m1, s1), (m2, s2) = _confirmed(tuned["winner"]), _confirmed((baseline or {}).get("winner"))
    if m1 is None or m2 is None:
        return {"this_run": "", "agrees": NOT_MEASURED, "difference": "", "beyond_spread": NOT_MEASURED,
                "note": "needs the confirmed scores of the tuned model and of the baseline"}
    measured, spread = m1 - m2, math.hypot(s1 or 0.0, s2 or 0.0)
    diff = measured - claim["score"]
    beyond = abs(diff) > max(spread, claim.get("tolerance", 0.0))
    apart = m1 - (s1 or 0.0) > m2 + (s2 or 0.0)
    return {"this_run": f"{_signed(measured)} ({m1:.3f} against {m2:.3f}); spread ± {spread:.3f}",
            "agrees": "no" if beyond else "yes", "difference": _signed(diff),
            "beyond_spread": "yes" if beyond else "no",
            "note": "the tuned model beats the baseline beyond both spreads" if apart
            else "the tuned model does not beat the baseline beyond their spreads"}


def _dropouts(trial: dict) -> list[float]:
    return [v for k, v in sorted(trial["hyperparameters"].items()) if k.startswith("dropout")]


def _check_dropout(claim: dict, outcome: dict) -> dict:
    low, high = claim["low"], claim["high"]

    def inside(trial: dict) -> bool:
        return all(low - 1e-9 <= v <= high + 1e-9 for v in _dropouts(trial))

    winner = outcome["winner"]
    used = _dropouts(winner)
    row = {"this_run": "winner's dropout: " + (", ".join(f"{v:g}" for v in used) or "none"),
           "agrees": "yes" if inside(winner) else "no", "difference": "", "beyond_spread": NOT_MEASURED}
    ins = [t for t in outcome["confirmed"] if inside(t)]
    outs = [t for t in outcome["confirmed"] if not inside(t)]
    if ins and outs:
        row["difference"] = _signed(_confirmed(ins[0])[0] - _confirmed(outs[0])[0])
        row["beyond_spread"] = "no" if _overlap(ins[0], outs[0]) else "yes"
        row["note"] = (f"best confirmed with all dropouts in {low}–{high}: {_pm(*_confirmed(ins[0]))}; "
                       f"with some outside: {_pm(*_confirmed(outs[0]))}")
    else:
        row["note"] = f"the confirmed configurations are all {'inside' if ins else 'outside'} {low}–{high}"
    return row


def claim_rows(claims: list[dict], outcomes: dict[str, dict]) -> list[dict]:
    """One row per claim: the tutorial's words and figures, this run, agrees, difference, beyond
    the confirmed spread, the held-out test score, a note; with the phase's run folder and exit code."""
    rows = []
    for claim in claims:
        outcome = outcomes.get(claim["phase"])
        row = {"row": claim["row"], "phase": claim["phase"], "claim": claim["text"], "this_run": "",
               "agrees": NOT_MEASURED, "difference": "", "beyond_spread": NOT_MEASURED, "test": "", "note": "",
               "run": outcome["run"] if outcome else None, "exit_code": outcome["exit_code"] if outcome else None}
        if outcome is None or outcome["winner"] is None:
            code = outcome["exit_code"] if outcome else None
            row["note"] = "did not run" if not code else f"failed (exit {code})"
            rows.append(row)
            continue
        winner = outcome["winner"]
        confirmed = winner.get("confirmed") or {}
        row["this_run"] = _this_run(outcome)
        row["test"] = _pm(confirmed.get("test_mean"), confirmed.get("test_std"))
        row["winner_hyperparameters"] = winner["hyperparameters"]
        row["confirmed_mean"], row["confirmed_std"] = _confirmed(winner)
        kind = claim["kind"]
        if kind == "winner":
            row.update(_check_winner(claim, outcome))
        elif kind == "score":
            row.update(_check_score(claim, outcome))
        elif kind == "improvement":
            row.update(_check_improvement(claim, outcome, outcomes.get(claim["baseline"])))
        elif kind == "dropout":
            row.update(_check_dropout(claim, outcome))
        if outcome["exit_code"]:
            row["note"] = "; ".join(n for n in (row["note"], f"failed (exit {outcome['exit_code']})") if n)
        rows.append(row)
    return rows
