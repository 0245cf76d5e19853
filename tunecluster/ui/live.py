"""The live view of a running search, drawn from the chief's `progress.json`.

On a terminal: a Rich progress bar over trials (with ETA), the best score so far with its trial
and hyperparameters, one line per worker (trial, epoch, latest metric, state) and the last
failure. Elsewhere (CI logs, pipes): a plain line when the counts, the best or a worker's trial,
state or restarts change (and every 30 s while only epochs advance), at most one every
`min_gap` seconds (changes in between are coalesced into the next line), with the best's
hyperparameters, an ETA and per worker its trial, epoch, latest objective value and restarts.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tunecluster.core.rundir import RunDir, read_json


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
    stopped, promoted = counts.get("stopped_early") or 0, counts.get("promoted") or 0
    requeue_text += (f", {stopped} stopped early" if stopped else "") + (f", {promoted} promoted" if promoted else "")
    return (f"trials {counts.get('completed', 0)}/{total} done, {counts.get('running', 0)} running, "
            f"{counts.get('failed', 0) + counts.get('invalid', 0)} failed{requeue_text}{budget_text(progress)}"
            f"{stage_text(progress)}; {best_text}")


def budget_left(progress: dict) -> Optional[float]:
    """Seconds of `tuner.max_time` left when progress.json was written (None: no budget, or not started)."""
    budget = progress.get("time_budget") or {}
    if not budget.get("max_time") or not budget.get("started_at"):
        return None
    if budget.get("reached_at"):
        return 0.0
    now = progress.get("updated_at") or time.time()
    return max(0.0, budget["max_time"] - (now - budget["started_at"]))


def budget_text(progress: dict) -> str:
    left = budget_left(progress)
    if left is None:
        return ""
    return ", time budget reached" if left == 0 else f", {_duration(left)} of the time budget left"


def stage_text(progress: dict) -> str:
    work = progress.get("work") or {}
    if work.get("stage") in ("confirmation", "done") and work.get("confirm_total"):
        return f"; confirmation {work.get('confirm_done', 0)}/{work['confirm_total']} retrainings"
    return ""


def plain_workers(progress: dict) -> str:
    """One part per worker: state, trial, epoch/epochs, the objective's latest value, restarts."""
    objective = progress.get("objective", "")
    parts = []
    for name, w in (progress.get("workers") or {}).items():
        epoch, epochs = w.get("epoch"), w.get("epochs")
        text = f"{name}: {w.get('state')}"
        if w.get("trial") is not None:
            text += f" trial {w['trial']}"
            if epoch is not None:
                text += f" epoch {f'{epoch}/{epochs}' if epochs else epoch}"
            value = (w.get("metrics") or {}).get(objective)
            if value is not None:
                text += f" {objective}={_fmt(value)}"
        text += f" restarts {w.get('restarts', 0)}"
        parts.append(text)
    return "; ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Eta:
    """Time left, from the trials this view saw end (a resumed run's earlier trials do not count)."""

    def __init__(self):
        self.first: Optional[tuple[float, int]] = None

    def update(self, progress: dict) -> Optional[float]:
        counts = progress.get("counts", {})
        done = counts.get("completed", 0) + counts.get("failed", 0) + counts.get("invalid", 0)
        total = progress.get("max_trials")
        now = time.monotonic()
        if self.first is None:
            self.first = (now, done)
            return None
        since, done_then = self.first
        left = budget_left(progress)
        if not total or done <= done_then or done >= total:
            return left or None
        estimate = (now - since) / (done - done_then) * (total - done)
        return estimate if left is None else min(estimate, left)


class LiveView:
    """Follows `progress.json` while `alive()` is true."""

    def __init__(self, run: RunDir, console: Optional[Console] = None, interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self.run = run
        self.console = console or Console()
        self.interval = interval
        self.clock = clock
        self._last_failure = None
        self._warned: set[str] = set()
        self.plain_every = 30.0  # s between plain lines that only report epochs
        self.min_gap = 5.0  # s: at most one plain line this often

    def _print_warnings(self, progress: dict) -> None:
        """Each warning of the run once (the chief finds them when the space is known, and at the end)."""
        for text in progress.get("warnings") or []:
            if text not in self._warned:
                self._warned.add(text)
                self.console.print(f"warning: {text}", style="yellow", highlight=False, markup=False)

    def follow(self, alive: Callable[[], bool]) -> Optional[dict]:
        if self.console.is_terminal:
            return self._follow_rich(alive)
        return self._follow_plain(alive)

    def _follow_plain(self, alive) -> Optional[dict]:
        last_key, last_epochs, last_print = None, None, None
        progress = None
        eta = Eta()
        while alive():
            progress = read_json(self.run.progress) or progress
            if progress:
                self._print_warnings(progress)
                remaining = eta.update(progress)
                now = self.clock()
                key = self._plain_key(progress)
                epochs = tuple(w.get("epoch") for w in (progress.get("workers") or {}).values())
                changed = key != last_key
                quiet = last_print is not None and now - last_print >= self.plain_every and epochs != last_epochs
                due = last_print is None or now - last_print >= self.min_gap
                if (changed or quiet) and due:  # long trials: their epochs every `plain_every` s
                    self._print_plain(progress, remaining)
                    last_key, last_epochs, last_print = key, epochs, now
            time.sleep(self.interval)
        final = read_json(self.run.progress) or progress
        if final:  # a short search can end between two polls: its last state, failure and warnings
            self._print_warnings(final)
            if self._plain_key(final) != last_key:
                self._print_plain(final, None)
            self._print_failure(final)
        return final

    @staticmethod
    def _plain_key(progress: dict) -> tuple:
        """What a new plain line is printed for: the counts and the best (the summary), each
        worker's state, trial and restarts; not epochs or the ETA."""
        return (summary_line(progress), tuple((n, w.get("state"), w.get("trial"), w.get("restarts"))
                                              for n, w in (progress.get("workers") or {}).items()))

    def _print_plain(self, progress: dict, remaining: Optional[float]) -> None:
        best = progress.get("best")
        best_hps = f" [{_short_hps(best['hyperparameters'])}]" if best and best.get("hyperparameters") else ""
        eta_text = f"; eta {_duration(remaining)}" if remaining is not None else ""
        self.console.print(f"[{time.strftime('%H:%M:%S')}] {summary_line(progress)}{best_hps}{eta_text} | "
                           f"{plain_workers(progress)}", highlight=False, markup=False)
        self._print_failure(progress)

    def _print_failure(self, progress: dict) -> None:
        failure = progress.get("last_failure")
        if failure and failure != self._last_failure:  # each failure once
            self.console.print(f"  last failure: trial {failure['trial_id']} on {failure['worker']}: "
                               f"{failure['error_type']}: {failure['message']}", highlight=False, markup=False)
            self._last_failure = failure

    def _follow_rich(self, alive) -> Optional[dict]:
        bar = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console)
        task = bar.add_task("trials", total=None)
        progress = None
        with Live(console=self.console, refresh_per_second=4, transient=False) as live:
            while alive():
                progress = read_json(self.run.progress) or progress
                if progress:
                    self._print_warnings(progress)
                    counts = progress.get("counts", {})
                    done = counts.get("completed", 0) + counts.get("failed", 0)
                    bar.update(task, completed=done, total=progress.get("max_trials"))
                    best = progress.get("best")
                    best_text = (f"best {progress['objective']} = [bold green]{_fmt(best['score'])}[/] "
                                 f"(trial {best['trial_id']}: {escape(_short_hps(best['hyperparameters']))})"
                                 if best else "best: no completed trial yet")
                    parts = [bar, best_text + escape(stage_text(progress)), worker_table(progress)]
                    failure = progress.get("last_failure")
                    if failure:
                        parts.append(f"[red]last failure[/]: trial {failure['trial_id']} on {failure['worker']}: "
                                     + escape(f"{failure['error_type']}: {failure['message']}"))
                    live.update(Group(*parts))
                time.sleep(self.interval)
        final = read_json(self.run.progress) or progress
        if final:
            self._print_warnings(final)
        return final
