"""The report's figure of every training's curve, for searches that stop trainings early (median
stopping, ASHA, Hyperband): the objective at each epoch of each trial, a cross where the chief
stopped a training, a dot where a promoted trial continued its parent's curve, and dashed lines
at ASHA's / Hyperband's rungs (the epochs trials are compared at)."""

from __future__ import annotations

import plotly.graph_objects as go

from tunecluster.report.data import RunData


def shows_curves(data: RunData) -> bool:
    """Only searches that stop or promote trainings get the figure."""
    return any(t.get("curve") and (t.get("stopped_early") or _parent(t)) for t in data.trials)


def _parent(trial: dict):
    return (trial.get("all_hyperparameters") or {}).get("tuner/trial_id")


def training_curves(data: RunData) -> go.Figure:
    fig = go.Figure()
    rungs = sorted({e for t in data.trials for e in [(t.get("all_hyperparameters") or {}).get("tuner/epochs")] if e})
    for trial in data.trials:
        curve = trial.get("curve") or []
        if not curve:
            continue
        epochs = list(range(1, len(curve) + 1))
        stopped = trial.get("stopped_early")
        parent = _parent(trial)
        name = f"trial {trial['trial_id']}" + (f" (from {parent})" if parent else "")
        fig.add_trace(go.Scatter(
            x=epochs, y=curve, mode="lines", name=name, showlegend=False, opacity=0.8,
            line=dict(width=1.5, color="#e45756" if stopped else "#4c78a8", dash="solid"),
            hovertemplate=f"{name}, epoch %{{x}}: %{{y:.4f}}<extra>{trial['status']}</extra>"))
        if stopped:
            fig.add_trace(go.Scatter(x=[len(curve)], y=[curve[-1]], mode="markers", showlegend=False,
                                     marker=dict(symbol="x", size=10, color="#e45756"),
                                     hovertemplate=f"trial {trial['trial_id']} stopped after epoch %{{x}}<extra></extra>"))
        start = (trial.get("all_hyperparameters") or {}).get("tuner/initial_epoch")
        if parent and start and start <= len(curve):
            fig.add_trace(go.Scatter(x=[start], y=[curve[start - 1]], mode="markers", showlegend=False,
                                     marker=dict(size=7, color="#54a24b"),
                                     hovertemplate=f"{name}: promoted at epoch %{{x}}<extra></extra>"))
    for epochs in rungs:
        fig.add_vline(x=epochs, line=dict(dash="dash", color="#bab0ac", width=1))
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=f"{data.objective} ({data.direction})")
    fig.update_layout(title="Every training's curve: stopped early (x), promoted (dot), rungs (dashed)",
                      height=420, margin=dict(l=60, r=20, t=60, b=50), template="plotly_white")
    return fig
