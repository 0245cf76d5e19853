"""The report's interactive figures (Plotly), built from `RunData`:

- `progress`: each trial's score and the best so far, by trial number and by wall time;
- `parallel`: parallel coordinates of the completed trials over their hyperparameters, coloured
  by score (categorical hyperparameters on an axis of their choices, log-sampled ones in log10);
- `hyperparameters`: score against each hyperparameter (scatter if numeric, box + points if
  categorical);
- `timeline`: each worker's trials as bars on a time axis (idle gaps are the blanks), beside the
  measured utilisation per worker.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tunecluster.report.data import HyperParameter, RunData, best_so_far, timeline, utilisation, workers

STATUS_COLOURS = {"COMPLETED": "#4c78a8", "STOPPED_EARLY": "#72b7b2", "RUNNING": "#f58518", "QUEUED": "#bab0ac",
                  "FAILED": "#e45756", "INVALID": "#e45756", "STOPPED": "#bab0ac"}
MISSING = "n/a"


def _label(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white",
                      margin=dict(l=60, r=30, t=70, b=50))
    return fig


def progress(data: RunData) -> go.Figure:
    curves = best_so_far(data)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("by trial number", "by wall time"),
                        horizontal_spacing=0.08)
    for col, (x, ids, scores, best) in enumerate((
            (curves["number"], curves["number_ids"], curves["number_scores"], curves["number_best"]),
            (curves["time_s"], curves["time_ids"], curves["time_scores"], curves["time_best"])), start=1):
        fig.add_trace(go.Scatter(x=x, y=scores, mode="markers", name="trial score", legendgroup="score",
                                 showlegend=col == 1, marker=dict(color="#9ecae9", size=8),
                                 customdata=ids, hovertemplate="trial %{customdata}: %{y:.4f}<extra></extra>"),
                      row=1, col=col)
        fig.add_trace(go.Scatter(x=x, y=best, mode="lines+markers", line_shape="hv", name="best so far",
                                 legendgroup="best", showlegend=col == 1, line=dict(color="#4c78a8", width=3),
                                 customdata=ids, hovertemplate="best %{y:.4f} after trial %{customdata}<extra></extra>"),
                      row=1, col=col)
    fig.update_xaxes(title_text="trial number", row=1, col=1, dtick=1 if len(data.trials) <= 20 else None)
    fig.update_xaxes(title_text="seconds since the first trial started", row=1, col=2)
    fig.update_yaxes(title_text=f"{data.objective} ({data.direction})", row=1, col=1)
    return _layout(fig, f"Best {data.objective} so far")


def _axis(hp: HyperParameter, values: list) -> dict:
    """One parallel-coordinates dimension: numbers as they are (log10 if log-sampled),
    categories as their index among the declared choices; missing values on their own tick."""
    present = [v for v in values if v is not None]
    if hp.numeric and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        use_log = hp.log and all(v > 0 for v in present)
        shown = [math.log10(v) if (use_log and v is not None) else v for v in values]
        label = f"{hp.name} (log10)" if use_log else hp.name
        lo = min((v for v in shown if v is not None), default=0.0)
        hi = max((v for v in shown if v is not None), default=1.0)
        if hp.min_value is not None and hp.max_value is not None:
            bounds = ([math.log10(hp.min_value), math.log10(hp.max_value)] if use_log and hp.min_value > 0
                      else [hp.min_value, hp.max_value])
            lo, hi = min(lo, bounds[0]), max(hi, bounds[1])
        if None not in shown:
            return dict(label=label, values=shown, range=[lo, hi])
        span = (hi - lo) or 1.0
        sentinel = lo - 0.15 * span
        ticks = [lo + span * i / 4 for i in range(5)]
        return dict(label=label, values=[sentinel if v is None else v for v in shown], range=[sentinel, hi],
                    tickvals=[sentinel] + ticks, ticktext=[MISSING] + [_label(t) for t in ticks])
    categories = list(hp.values) if hp.values else []
    for v in present:
        if v not in categories:
            categories.append(v)
    if None in values:  # at the bottom, as on numeric axes
        categories.insert(0, None)
    index = {_label(c) if c is not None else MISSING: i for i, c in enumerate(categories)}
    labels = [_label(c) if c is not None else MISSING for c in categories]
    return dict(label=hp.name, values=[index[_label(v) if v is not None else MISSING] for v in values],
                tickvals=list(range(len(categories))), ticktext=labels,
                range=[-0.5, len(categories) - 0.5] if len(categories) > 1 else [-1, 1])


def parallel(data: RunData) -> go.Figure:
    rows = data.completed
    dims = [_axis(hp, [t["hyperparameters"].get(hp.name) for t in rows]) for hp in data.hyperparameters]
    dims.append(dict(label=data.objective, values=[t["score"] for t in rows]))
    fig = go.Figure(go.Parcoords(
        line=dict(color=[t["score"] for t in rows], colorscale="Viridis", showscale=True,
                  reversescale=data.direction == "min", colorbar=dict(title=dict(text=data.objective))),
        dimensions=dims, labelangle=-20 if len(dims) > 8 else 0, labelside="bottom" if len(dims) > 8 else "top",
    ))
    left_out = len(data.trials) - len(rows)
    note = f" ({left_out} trials without a score left out)" if left_out else ""
    fig = _layout(fig, f"All completed trials over their hyperparameters, coloured by {data.objective}{note}",
                  height=480)
    fig.update_layout(margin=dict(l=80, r=80, t=110, b=90 if len(dims) > 8 else 40))
    if len(dims) > 14:  # many axes: wider than the page (the section scrolls sideways)
        fig.update_layout(width=200 + 75 * len(dims), autosize=False)
    return fig


def hyperparameters(data: RunData) -> go.Figure:
    hps = data.hyperparameters or [HyperParameter("(none)", "choice")]
    cols = min(3, len(hps))
    nrows = math.ceil(len(hps) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[hp.name for hp in hps],
                        vertical_spacing=min(0.12, 0.6 / max(nrows, 1)), horizontal_spacing=0.07)
    rows = data.completed
    for i, hp in enumerate(hps):
        r, c = i // cols + 1, i % cols + 1
        pairs = [(t["hyperparameters"].get(hp.name), t["score"], t["trial_id"]) for t in rows]
        pairs = [p for p in pairs if p[0] is not None]
        numeric = hp.numeric and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _, _ in pairs)
        if numeric:
            fig.add_trace(go.Scatter(x=[p[0] for p in pairs], y=[p[1] for p in pairs], mode="markers",
                                     name=hp.name, showlegend=False, customdata=[p[2] for p in pairs],
                                     marker=dict(color="#4c78a8", size=8, opacity=0.8),
                                     hovertemplate=f"trial %{{customdata}}: {hp.name}=%{{x}}, score %{{y:.4f}}<extra></extra>"),
                          row=r, col=c)
            if hp.log:
                fig.update_xaxes(type="log", row=r, col=c)
        else:
            order = [_label(v) for v in hp.values] or sorted({_label(p[0]) for p in pairs})
            fig.add_trace(go.Box(x=[_label(p[0]) for p in pairs], y=[p[1] for p in pairs], name=hp.name,
                                 showlegend=False, boxpoints="all", jitter=0.3, pointpos=0,
                                 customdata=[p[2] for p in pairs], marker=dict(color="#4c78a8", size=7),
                                 hovertemplate=f"trial %{{customdata}}: {hp.name}=%{{x}}, score %{{y:.4f}}<extra></extra>"),
                          row=r, col=c)
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, row=r, col=c)
        if c == 1:
            fig.update_yaxes(title_text=data.objective, row=r, col=c)
    scores = [t["score"] for t in rows]
    if scores:  # one score scale for every panel, so panels compare
        pad = (max(scores) - min(scores)) * 0.08 or 0.01
        fig.update_yaxes(range=[min(scores) - pad, max(scores) + pad])
    return _layout(fig, f"{data.objective} against each hyperparameter", height=max(360, 300 * nrows))


def timeline_figure(data: RunData) -> go.Figure:
    bars = timeline(data)
    names = workers(data)
    usage = utilisation(data)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.78, 0.22], shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=("trials per worker (blank = idle)", "utilisation (busy / available)"))
    for status in sorted({b.status for b in bars}):
        chosen = [b for b in bars if b.status == status]
        fig.add_trace(go.Bar(
            y=[b.worker for b in chosen], x=[b.end - b.start for b in chosen], base=[b.start for b in chosen],
            orientation="h", name=status.lower(), marker=dict(color=STATUS_COLOURS.get(status, "#999"),
                                                               line=dict(color="white", width=1)),
            text=[b.trial_id for b in chosen], textposition="inside", insidetextanchor="middle",
            customdata=[[b.trial_id, b.start, b.end, "" if b.score is None else f"{b.score:.4f}"] for b in chosen],
            hovertemplate="trial %{customdata[0]}: %{customdata[1]:.1f} s to %{customdata[2]:.1f} s"
                          " (%{x:.1f} s), score %{customdata[3]}<extra></extra>"), row=1, col=1)
    per = usage["workers"]
    fig.add_trace(go.Bar(y=names, x=[100 * (per[n]["utilisation"] or 0) for n in names], orientation="h",
                         name="utilisation", showlegend=False, marker=dict(color="#54a24b"),
                         text=[f"{100 * (per[n]['utilisation'] or 0):.0f}%" for n in names], textposition="auto",
                         customdata=[[per[n]["busy_s"], per[n]["available_s"]] for n in names],
                         hovertemplate="%{y}: busy %{customdata[0]:.1f} s of %{customdata[1]:.1f} s<extra></extra>"),
                  row=1, col=2)
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(names)), row=1, col=1)
    fig.update_xaxes(title_text="seconds since the first trial started", row=1, col=1)
    fig.update_xaxes(title_text="%", range=[0, 100], row=1, col=2)
    mean = usage["mean"]
    title = "Timeline of trials per worker" + (f" (mean utilisation {100 * mean:.0f}%)" if mean is not None else "")
    fig.update_layout(barmode="overlay")
    return _layout(fig, title, height=max(300, 140 + 70 * len(names)))


FIGURES = {  # in the order of the page
    "best-so-far": progress,
    "parallel-coordinates": parallel,
    "timeline": timeline_figure,
    "hyperparameter-scores": hyperparameters,
}
