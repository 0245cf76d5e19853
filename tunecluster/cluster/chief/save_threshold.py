"""The score a search training must reach for its weights to be worth writing (`fit.checkpoints:
top`): the k-th best completed trial's score, k = max(3, confirm.top).

None: write them (fewer than k trials completed, `checkpoints: all`, Hyperband or ASHA, whose
promotions continue from any rung's checkpoint). The k-th best only rises as trials end, so a
training that ends up in the top k, or as the best execution of a trial that does (it scores at
least the trial's mean), always met the threshold it was given.

The score is kept with the number of ended trials it was read at: a trial becomes COMPLETED only
as it ends, so it holds until the next end. The chief refreshes it right after each end, while it
holds the oracle's lock anyway (`refresh`), and NextWork reads it without taking the lock again:
at a thousand workers every hold of that lock is a hand-over among the waiting handlers.
"""

from __future__ import annotations

from typing import Optional


class SaveThreshold:
    def __init__(self, spec, oracle, oracle_lock):
        self.spec = spec
        self.oracle = oracle
        self.oracle_lock = oracle_lock  # a callable returning a context manager holding the lock
        self.applies = spec.fit.checkpoints != "all" and spec.tuner.kind not in ("hyperband", "asha")
        self._kept: Optional[tuple[int, Optional[float]]] = None  # (ended trials, score)

    def score(self) -> Optional[float]:
        if not self.applies:
            return None
        kept = self._kept
        if kept is not None and kept[0] == len(self.oracle.end_order):
            return kept[1]
        with self.oracle_lock():
            return self.refresh()

    def refresh(self) -> Optional[float]:
        """(oracle lock held) Read the score again."""
        if not self.applies:
            return None
        keep = max(3, self.spec.confirm.top)
        best = self.oracle.get_best_trials(keep)
        value = (None if len(best) < keep or any(t.status != "COMPLETED" or t.score is None for t in best)
                 else float(best[-1].score))
        self._kept = (len(self.oracle.end_order), value)
        return value
