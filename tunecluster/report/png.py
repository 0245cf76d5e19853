"""The report's figures as PNG files (Matplotlib, Agg backend: no display, no browser), drawn from
the same `RunData` as the HTML: best so far, parallel coordinates, score per hyperparameter, and
the worker timeline with utilisation.
"""

from __future__ import annotations

import math
from pathlib import Path

from tunecluster.report.data import RunData, best_so_far, timeline, utilisation, workers
from tunecluster.report.figures import STATUS_COLOURS, _label

DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def progress_png(data: RunData, path: Path) -> None:
    plt = _plt()
    curves = best_so_far(data)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=DPI, layout="constrained")
    for ax, x, scores, best, xlabel in (
            (axes[0], curves["number"], curves["number_scores"], curves["number_best"], "trial number"),
            (axes[1], curves["time_s"], curves["time_scores"], curves["time_best"],
             "seconds since the first trial started")):
        ax.scatter(x, scores, color="#9ecae9", s=30, label="trial score", zorder=2)
        if x:
            ax.step(x, best, where="post", color="#4c78a8", linewidth=2.5, label="best so far", zorder=3)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(f"{data.objective} ({data.direction})")
    axes[0].legend(loc="best")
    fig.suptitle(f"{data.experiment}: best {data.objective} so far")
    fig.savefig(path)
    plt.close(fig)


def _encode(hp, values):
    """Values on a 0..1 axis, with tick positions and labels (categories: their index)."""
    present = [v for v in values if v is not None]
    numeric = hp.numeric and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric:
        use_log = hp.log and all(v > 0 for v in present)
        f = (lambda v: math.log10(v)) if use_log else (lambda v: v)
        bounds = [f(v) for v in present]
        if hp.min_value is not None and hp.max_value is not None and (not use_log or hp.min_value > 0):
            bounds += [f(hp.min_value), f(hp.max_value)]
        lo, hi = (min(bounds), max(bounds)) if bounds else (0.0, 1.0)
        span = (hi - lo) or 1.0
        scaled = [None if v is None else (f(v) - lo) / span for v in values]
        ticks = [0.0, 0.5, 1.0]
        labels = [_label(10 ** (lo + t * span) if use_log else lo + t * span) for t in ticks]
        return scaled, ticks, labels
    categories = [c for c in hp.values] if hp.values else []
    for v in present:
        if v not in categories:
            categories.append(v)
    n = max(len(categories) - 1, 1)
    positions = {_label(c): (i / n if len(categories) > 1 else 0.5) for i, c in enumerate(categories)}
    return ([None if v is None else positions[_label(v)] for v in values],
            list(positions.values()), list(positions.keys()))


def parallel_png(data: RunData, path: Path) -> None:
    plt = _plt()
    import matplotlib
    from matplotlib import cm, colors

    rows = data.completed
    hps = data.hyperparameters
    axes_n = len(hps) + 1
    fig, ax = plt.subplots(figsize=(min(24, max(8, 1.1 * axes_n + 3)), 5.5), dpi=DPI, layout="constrained")
    scores = [t["score"] for t in rows]
    encoded = [_encode(hp, [t["hyperparameters"].get(hp.name) for t in rows]) for hp in hps]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 1.0)
    span = (hi - lo) or 1.0
    encoded.append(([(s - lo) / span for s in scores], [0.0, 0.5, 1.0],
                    [_label(lo + t * span) for t in (0.0, 0.5, 1.0)]))
    cmap = matplotlib.colormaps["viridis_r" if data.direction == "min" else "viridis"]
    norm = colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
    order = sorted(range(len(rows)), key=lambda i: scores[i], reverse=data.direction == "min")
    missing_at = -0.12  # a hyperparameter a trial did not use (e.g. a deeper layer's units)
    for i in order:  # best drawn last (on top)
        ys = [missing_at if axis[0][i] is None else axis[0][i] for axis in encoded]
        ax.plot(range(axes_n), ys, color=cmap(norm(scores[i])), alpha=0.85, linewidth=1.8)
    for x, (values, ticks, labels) in enumerate(encoded):
        ax.axvline(x, color="#555", linewidth=1)
        if any(v is None for v in values):
            ticks, labels = [missing_at] + list(ticks), ["n/a"] + list(labels)
        for t, label in zip(ticks, labels):
            ax.text(x + 0.03, t, label, fontsize=7 if axes_n > 12 else 8, va="center", ha="left", color="#333")
    ax.set_xticks(range(axes_n))
    ax.set_xticklabels([hp.name + (" (log)" if hp.log else "") for hp in hps] + [data.objective],
                       rotation=30 if axes_n > 6 else 0, ha="right" if axes_n > 6 else "center")
    ax.set_yticks([])
    ax.set_xlim(-0.2, axes_n - 0.6)
    ax.set_ylim(-0.17, 1.05)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=data.objective, pad=0.02)
    ax.set_title(f"{data.experiment}: {len(rows)} completed trials, coloured by {data.objective}")
    fig.savefig(path)
    plt.close(fig)


def hyperparameters_png(data: RunData, path: Path) -> None:
    plt = _plt()
    hps = data.hyperparameters
    cols = max(1, min(3, len(hps)))
    nrows = max(1, math.ceil(len(hps) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.2 * nrows + 0.4), dpi=DPI, squeeze=False,
                             layout="constrained")
    rows = data.completed
    for i, ax in enumerate(axes.flat):
        if i >= len(hps):
            ax.axis("off")
            continue
        hp = hps[i]
        pairs = [(t["hyperparameters"].get(hp.name), t["score"]) for t in rows]
        pairs = [p for p in pairs if p[0] is not None]
        numeric = hp.numeric and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in pairs)
        if numeric:
            ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], color="#4c78a8", s=30, alpha=0.85)
            if hp.log:
                ax.set_xscale("log")
        else:
            order = [_label(v) for v in hp.values] or sorted({_label(p[0]) for p in pairs})
            for v, _ in pairs:
                if _label(v) not in order:
                    order.append(_label(v))
            groups = [[s for v, s in pairs if _label(v) == label] for label in order]
            shown = [(label, g) for label, g in zip(order, groups) if g]
            if shown:
                ax.boxplot([g for _, g in shown], positions=range(len(shown)), widths=0.5, showfliers=False)
                for x, (_, g) in enumerate(shown):
                    jitter = [x + 0.12 * ((k % 5) - 2) / 2 for k in range(len(g))]
                    ax.scatter(jitter, g, color="#4c78a8", s=22, alpha=0.85, zorder=3)
                ax.set_xticks(range(len(shown)))
                ax.set_xticklabels([label for label, _ in shown], rotation=20 if len(shown) > 4 else 0)
        ax.set_title(hp.name)
        ax.grid(alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel(data.objective)
    fig.suptitle(f"{data.experiment}: {data.objective} against each hyperparameter")
    fig.savefig(path)
    plt.close(fig)


def timeline_png(data: RunData, path: Path) -> None:
    plt = _plt()
    bars = timeline(data)
    names = workers(data)
    usage = utilisation(data)["workers"]
    fig, (ax, ax_u) = plt.subplots(1, 2, figsize=(12, 1.6 + 0.7 * max(len(names), 1)), dpi=DPI, sharey=True,
                                   gridspec_kw={"width_ratios": [4, 1]}, layout="constrained")
    y = {name: len(names) - 1 - i for i, name in enumerate(names)}
    seen = set()
    for bar in bars:
        colour = STATUS_COLOURS.get(bar.status, "#999")
        label = bar.status.lower() if bar.status not in seen else None
        seen.add(bar.status)
        ax.barh(y[bar.worker], bar.end - bar.start, left=bar.start, height=0.6, color=colour,
                edgecolor="white", label=label)
        if bar.end - bar.start > 0:
            ax.text((bar.start + bar.end) / 2, y[bar.worker], bar.trial_id, ha="center", va="center",
                    fontsize=8, color="white")
    ax.set_yticks(list(y.values()))
    ax.set_yticklabels(list(y.keys()))
    ax.set_xlabel("seconds since the first trial started")
    ax.set_title("trials per worker (blank = idle)")
    ax.grid(axis="x", alpha=0.3)
    if bars:
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.25 if len(names) < 3 else -0.12), ncol=4, frameon=False)
    values = [100 * (usage[n]["utilisation"] or 0) for n in names]
    ax_u.barh([y[n] for n in names], values, height=0.6, color="#54a24b")
    for n, v in zip(names, values):
        ax_u.text(min(v, 95), y[n], f"{v:.0f}%", va="center", ha="right" if v > 20 else "left", fontsize=9)
    ax_u.set_xlim(0, 100)
    ax_u.set_xlabel("% busy")
    ax_u.set_title("utilisation")
    fig.suptitle(f"{data.experiment}: workers")
    fig.savefig(path)
    plt.close(fig)


PNGS = {
    "best-so-far": progress_png,
    "parallel-coordinates": parallel_png,
    "hyperparameter-scores": hyperparameters_png,
    "timeline": timeline_png,
}


def write_pngs(data: RunData, folder: Path, stem: str) -> list[Path]:
    """One PNG per figure, `<stem>-<figure>.png` in `folder`."""
    paths = []
    for key, draw in PNGS.items():
        path = folder / f"{stem}-{key}.png"
        draw(data, path)
        paths.append(path)
    return paths
