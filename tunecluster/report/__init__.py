"""`tunecluster report`: one self-contained HTML file (and optionally PNGs) showing a search:
best so far, parallel coordinates, score per hyperparameter, worker timeline and utilisation,
the best trial and the sortable results table.

    data.py    what is shown, read from the run directory (no plotting)
    figures.py the Plotly figures
    html.py    the HTML page (Plotly's JavaScript inlined)
    png.py     the same figures as PNG files (Matplotlib)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass
class Report:
    html: Path
    pngs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    trials: int = 0
    finished: bool = True


def build_report(run_dir: str | Path, out: Optional[str | Path] = None, png: bool = False) -> Report:
    """Write the report of the run in `run_dir` to `out` (default `<run>/report.html`)."""
    from tunecluster.core.rundir import write_atomic
    from tunecluster.report.data import load_run
    from tunecluster.report.html import render

    started = time.perf_counter()
    data = load_run(run_dir)
    target = Path(out) if out is not None else data.root / "report.html"
    write_atomic(target, render(data))
    pngs = []
    if png:
        from tunecluster.report.png import write_pngs

        pngs = write_pngs(data, target.parent, target.stem)
    return Report(target.resolve(), pngs, time.perf_counter() - started, len(data.trials), data.finished)
