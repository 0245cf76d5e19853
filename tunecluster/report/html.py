"""The report as one self-contained HTML file: Plotly's JavaScript inlined once (no network needed
to open it), one section per figure, the best trial's hyperparameters and metrics, and the
results table (click a column header to sort; a few lines of inline JavaScript).
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone

from tunecluster.report.data import RunData, utilisation
from tunecluster.tuning.results import SCORED
from tunecluster.report.curves import shows_curves, training_curves
from tunecluster.report.figures import FIGURES

TITLES = {
    "best-so-far": "Best so far",
    "parallel-coordinates": "Parallel coordinates",
    "hyperparameter-scores": "Score per hyperparameter",
    "timeline": "Workers: timeline and utilisation",
    "training-curves": "Training curves: stopped and promoted trainings",
}

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto; max-width: 1280px;
       color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } .meta { color: #555; margin-top: 0; }
section { margin: 28px 0; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; } table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:after { content: ' \\2195'; color: #aaa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef6e8; } .error { color: #b00; max-width: 360px; } ul.warnings li { color: #8a5a00; }
.scroll { overflow-x: auto; }
.cards { display: flex; gap: 32px; flex-wrap: wrap; }
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.dataset.order !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? 'asc' : 'desc';
      function key(row) { var c = row.cells[col]; return c.dataset.sort !== undefined ? c.dataset.sort : c.textContent; }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
        var both = x !== '' && y !== '' && !isNaN(nx) && !isNaN(ny);
        var r = both ? nx - ny : (x === '' ? 1 : y === '' ? -1 : x.localeCompare(y));
        return asc ? r : -r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value, digits: int = 4) -> str:
    if value is None:
        return '<td class="num" data-sort=""></td>'
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return f'<td class="num" data-sort="{_e(value)}">{_e(text)}</td>'


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def results_table(data: RunData) -> str:
    """Every trial, best first; every hyperparameter (Keras Tuner's tuner/* too) as a column."""
    names = list(data.hp_names)
    for trial in data.trials:
        for name in trial["hyperparameters"]:
            if name not in names:
                names.append(name)
    other = "last" if data.score_mode == "best_epoch" else "best"
    head = ["rank", "trial", "status", data.objective, f"{other} epoch", "± std", "confirmed mean",
            "confirmed std", "worker", "time (s)", "requeues", *names, "notes"]
    out = ['<table class="sortable" id="results"><thead><tr>']
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    best_id = data.best["trial_id"] if data.best else None
    rank = 0
    for row in data.sorted_rows():
        scored = row["status"] in SCORED and row["score"] is not None
        rank += 1 if scored else 0
        cls = ' class="best"' if row["trial_id"] == best_id else ""
        error = f"{row['error_type']}: {row.get('message') or ''}" if row.get("error_type") else ""
        if row.get("degenerate"):
            error = "degenerate: predicts one class" + (f"; {error}" if error else "")
        confirmed = row.get("confirmed") or {}
        cells = [_num(rank if scored else None), f'<td data-sort="{_e(row["trial_id"])}">{_e(row["trial_id"])}</td>',
                 f"<td>{_e(row['status'])}</td>", _num(row["score"]), _num(row.get(f"score_{other}_epoch")),
                 _num(row.get("score_std")), _num(confirmed.get("mean")), _num(confirmed.get("std")),
                 f"<td>{_e(row.get('worker'))}</td>", _num(row.get("duration_s"), 1), _num(row.get("requeues", 0))]
        for name in names:
            value = row["hyperparameters"].get(name)
            cells.append(_num(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                         else f"<td>{_e(_value(value))}</td>")
        cells.append(f'<td class="error">{_e(error[:300])}</td>')
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv_table(pairs, caption: str) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_value(v))}</td></tr>" for k, v in pairs)
    return f"<div><h3>{_e(caption)}</h3><table>{rows}</table></div>"


def _kv_grid(pairs, caption: str, per_row: int) -> str:
    """Name/value pairs, `per_row` pairs to a row (many hyperparameters stay compact)."""
    pairs = list(pairs)
    rows = []
    for start in range(0, len(pairs), per_row):
        cells = "".join(f"<th>{_e(k)}</th><td>{_e(_value(v))}</td>" for k, v in pairs[start:start + per_row])
        rows.append(f"<tr>{cells}</tr>")
    return f"<div><h3>{_e(caption)}</h3><table>{''.join(rows)}</table></div>"


def best_section(data: RunData) -> str:
    if not data.best:
        return "<p>No completed trial yet.</p>"
    best = data.best
    values = best["hyperparameters"]
    order = [n for n in data.hp_names if n in values] + [n for n in values if n not in data.hp_names]
    pairs = [(n, values[n]) for n in order]
    parts = [_kv_grid(pairs, "hyperparameters", per_row=1 if len(pairs) <= 8 else 4)]
    parts.append(_kv_table(sorted(best.get("metrics", {}).items()), "metrics at its best epoch (search)"))
    exported = data.exported or {}
    for split in ("validation", "test"):
        if exported.get(split):
            parts.append(_kv_table(sorted(exported[split].items()), f"exported model, {split} split"))
    info = (f"trial <b>{_e(best['trial_id'])}</b> on {_e(best.get('worker'))}: {_e(data.objective)} = "
            f"<b>{best['score']:.4f}</b> (epoch {_e((best.get('best_step') or 0) + 1)}), "
            f"{_e(best.get('duration_s'))} s")
    return f"<p>{info}</p><div class=\"cards\">{''.join(parts)}</div>"


def warnings_section(data: RunData) -> str:
    if not data.warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in data.warnings)
    return f'<section id="warnings"><h2>Warnings</h2><ul class="warnings">{items}</ul></section>'


def confirmation_section(data: RunData) -> str:
    """The confirmed configurations: their retrainings' mean ± std beside the search's score."""
    ranking = data.confirmation.get("ranking") or []
    by_id = {t["trial_id"]: t for t in data.trials}
    if not ranking:
        state = data.confirmation.get("stage", "off")
        return (f'<section id="confirmation"><h2>Confirmation</h2><p>No confirmation stage '
                f"({_e(state)}): the ranking is the search's own, one training per execution.</p></section>")
    rows = []
    for position, trial_id in enumerate(ranking, 1):
        t = by_id.get(trial_id) or {}
        c = t.get("confirmed") or {}
        scores = ", ".join(f"{v:.4f}" for v in c.get("scores") or [] if v is not None)
        rows.append(f"<tr>{_num(position)}<td>{_e(trial_id)}</td>{_num(c.get('mean'))}{_num(c.get('std'))}"
                    f"{_num(c.get('runs'))}<td>{_e(scores)}</td>{_num(c.get('test_mean'))}{_num(t.get('score'))}</tr>")
    note = ("Their mean ± std intervals overlap: the top configurations are not distinguishable with this "
            "budget." if data.confirmation.get("overlap") else "")
    return ('<section id="confirmation"><h2>Confirmation</h2><p>After the search, the '
            f"{_e(data.confirmation.get('top'))} best configurations were retrained "
            f"{_e(data.confirmation.get('repeats'))} times each with fresh seeds; the ranking and the exported "
            f"model follow the confirmed mean. {_e(note)}</p>" '<table class="sortable"><thead><tr><th>rank</th>'
            "<th>trial</th><th>confirmed mean</th><th>std</th><th>runs</th><th>scores</th><th>test mean</th>"
            f"<th>search score</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def _counts(data: RunData) -> str:
    counts: dict[str, int] = {}
    for trial in data.trials:
        counts[trial["status"].lower()] = counts.get(trial["status"].lower(), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def render(data: RunData) -> str:
    """The whole HTML document."""
    sections = []
    first = True
    figures = dict(FIGURES)
    if shows_curves(data):  # a search that stops or promotes trainings: every curve, with its stop points
        figures["training-curves"] = training_curves
    for key, build in figures.items():
        figure = build(data)
        div = figure.to_html(full_html=False, include_plotlyjs=first, div_id=f"plot-{key}",
                             config={"displaylogo": False, "responsive": True})
        first = False
        sections.append(f'<section id="{key}"><h2>{_e(TITLES[key])}</h2><div class="scroll">{div}</div></section>')
    usage = utilisation(data)
    usage_rows = "".join(
        f"<tr><td>{_e(name)}</td>{_num(w['trials'])}{_num(w['busy_s'], 1)}{_num(w['available_s'], 1)}"
        f"{_num(None if w['utilisation'] is None else 100 * w['utilisation'], 1)}</tr>"
        for name, w in usage["workers"].items())
    sections.insert(list(FIGURES).index("timeline") + 1, (
        '<section id="utilisation"><h2>Worker utilisation</h2><p>Available time: from the first trial\'s '
        "start to the last trial's end (or the last update of a running search), the same for every "
        "worker; busy time: the union of its trials.</p><table class=\"sortable\"><thead><tr><th>worker</th>"
        "<th>trials</th><th>busy (s)</th><th>available (s)</th><th>utilisation (%)</th></tr></thead>"
        f"<tbody>{usage_rows}</tbody></table></section>"))
    sections.insert(0, f'<section id="best-trial"><h2>Best trial</h2>{best_section(data)}</section>')
    sections.insert(1, confirmation_section(data))
    if data.warnings:
        sections.insert(0, warnings_section(data))
    sections.append(f'<section id="results-table"><h2>All trials</h2><p>Click a column header to sort.</p>'
                    f"{results_table(data)}</section>")
    state = "finished" if data.finished else "still running (re-run the report to refresh)"
    generated = datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    summary = json.dumps({"experiment": data.experiment, "hyperparameters": data.hp_names,
                          "figures": list(figures), "trials": len(data.trials)})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tunecluster report: {_e(data.experiment)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{_e(data.experiment)}</h1>
<p class="meta">{_e(data.tuner)} search, objective {_e(data.objective)} ({_e(data.direction)}),
{len(data.trials)} of {_e(data.max_trials)} trials ({_e(_counts(data))}); {_e(state)}.
Run directory {_e(data.root)}; report made {_e(generated)}.</p>
{''.join(sections)}
<script type="application/json" id="report-summary">{html.escape(summary, quote=False)}</script>
<script>{SORT_JS}</script>
</body></html>
"""
