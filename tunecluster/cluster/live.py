"""The live view of a running search, drawn from the chief's `progress.json`.

On a terminal: a Rich progress bar over trials (with ETA), the best score so far with its trial
and hyperparameters, one line per worker (trial, epoch, latest metric, state) and the last
failure. Elsewhere (CI logs, pipes): a plain line whenever something changes.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tunecluster.cluster.rundir import RunDir, read_json


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _short_hps(hps: dict, limit: int = 6) -> str:
    items = [f"{k}={_fmt(v)}" for k, v in hps.items()]
    more = f" (+{len(items) - limit})" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def worker_table(progress: dict) -> Table:
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for column in ("worker", "state", "trial", "epoch", progress.get("objective", "metric"), "restarts"):
        table.add_column(column)
    objective = progress.get("objective", "")
    for name, worker in (progress.get("workers") or {}).items():
        metrics = worker.get("metrics") or {}
        epoch = worker.get("epoch")
        epochs = worker.get("epochs")
        table.add_row(
            name, worker.get("state", "?"), _fmt(worker.get("trial")),
            f"{epoch}/{epochs}" if epoch and epochs else _fmt(epoch),
            _fmt(metrics.get(objective)), str(worker.get("restarts", 0)),
        )
    return table


def summary_line(progress: dict) -> str:
    counts = progress.get("counts", {})
    total = progress.get("max_trials") or "?"
    best = progress.get("best")
    best_text = (f"best {progress.get('objective')}={_fmt(best['score'])} (trial {best['trial_id']})"
                 if best else "no completed trial yet")
    requeued = progress.get("requeued") or 0
    requeue_text = f", {requeued} taken back from lost workers" if requeued else ""
    return (f"trials {counts.get('completed', 0)}/{total} done, {counts.get('running', 0)} running, "
            f"{counts.get('failed', 0) + counts.get('invalid', 0)} failed{requeue_text}; {best_text}")


class LiveView:
    """Follows `progress.json` while `alive()` is true."""

    def __init__(self, run: RunDir, console: Optional[Console] = None, interval: float = 0.5):
        self.run = run
        self.console = console or Console()
        self.interval = interval

    def follow(self, alive: Callable[[], bool]) -> Optional[dict]:
        if self.console.is_terminal:
            return self._follow_rich(alive)
        return self._follow_plain(alive)

    def _follow_plain(self, alive) -> Optional[dict]:
        last_line = None
        progress = None
        while alive():
            progress = read_json(self.run.progress) or progress
            if progress:
                line = summary_line(progress)
                workers = "; ".join(
                    f"{n}: {w.get('state')} trial {_fmt(w.get('trial'))} epoch {_fmt(w.get('epoch'))}"
                    for n, w in (progress.get("workers") or {}).items())
                if line != last_line:
                    self.console.print(f"[{time.strftime('%H:%M:%S')}] {line} | {workers}", highlight=False)
                    failure = progress.get("last_failure")
                    if failure:
                        self.console.print(f"  last failure: trial {failure['trial_id']} on {failure['worker']}: "
                                           f"{failure['error_type']}: {failure['message']}", highlight=False)
                    last_line = line
            time.sleep(self.interval)
        return read_json(self.run.progress) or progress

    def _follow_rich(self, alive) -> Optional[dict]:
        bar = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console)
        task = bar.add_task("trials", total=None)
        progress = None
        with Live(console=self.console, refresh_per_second=4, transient=False) as live:
            while alive():
                progress = read_json(self.run.progress) or progress
                if progress:
                    counts = progress.get("counts", {})
                    done = counts.get("completed", 0) + counts.get("failed", 0)
                    bar.update(task, completed=done, total=progress.get("max_trials"))
                    best = progress.get("best")
                    best_text = (f"best {progress['objective']} = [bold green]{_fmt(best['score'])}[/] "
                                 f"(trial {best['trial_id']}: {_short_hps(best['hyperparameters'])})"
                                 if best else "best: no completed trial yet")
                    parts = [bar, best_text, worker_table(progress)]
                    failure = progress.get("last_failure")
                    if failure:
                        parts.append(f"[red]last failure[/]: trial {failure['trial_id']} on {failure['worker']}: "
                                     f"{failure['error_type']}: {failure['message']}")
                    live.update(Group(*parts))
                time.sleep(self.interval)
        return read_json(self.run.progress) or progress
