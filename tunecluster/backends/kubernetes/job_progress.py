"""The search's progress published on the chief Job while a launcher follows it (`up`, `attach
--follow`; `attach` and `status` publish it once too), so that `kubectl get jobs -l tunecluster.io/experiment=NAME` shows it:

    annotations  tunecluster.io/progress: "12/40 trials"
                 tunecluster.io/trials-done: "12", tunecluster.io/trials-total: "40"
    labels       tunecluster.io/trials-done: "12", tunecluster.io/trials-total: "40"  (kubectl -L)

The chief pod runs without a service-account token, so it cannot patch its Job itself: the marks
change only while some launcher follows the experiment (or when `status`/`attach` read it).
"""

from __future__ import annotations

from typing import Optional

from tunecluster.backends.kubernetes.client import Cluster

PROGRESS = "tunecluster.io/progress"
DONE = "tunecluster.io/trials-done"
TOTAL = "tunecluster.io/trials-total"


def progress_marks(progress: Optional[dict]) -> Optional[dict]:
    """The metadata patch for a progress.json document (None when it says nothing yet)."""
    if not progress:
        return None
    counts = progress.get("counts") or {}
    done = int(counts.get("completed", 0)) + int(counts.get("failed", 0)) + int(counts.get("invalid", 0))
    total = progress.get("max_trials")
    if total is None:
        return None
    text = f"{done}/{total} trials" + (", finished" if progress.get("finished") else "")
    numbers = {DONE: str(done), TOTAL: str(total)}
    return {"metadata": {"annotations": {PROGRESS: text, **numbers}, "labels": dict(numbers)}}


class JobProgress:
    """Patches the chief Job when the marks change (a failed patch is not an error: following goes on)."""

    def __init__(self, cluster: Cluster, job: str):
        self.cluster, self.job = cluster, job
        self.published: Optional[dict] = None
        self.error: Optional[str] = None

    def publish(self, progress: Optional[dict]) -> bool:
        marks = progress_marks(progress)
        if marks is None or marks == self.published:
            return False
        try:
            self.cluster.batch.patch_namespaced_job(self.job, self.cluster.namespace, marks)
        except Exception as exc:  # e.g. a Role without `patch` on jobs: the search is not affected
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return False
        self.published = marks
        return True
