"""Following a Kubernetes experiment from this machine: the chief's progress.json and
results.json mirrored into the local run folder (read through the running chief pod with the exec
API), pod problems reported as they appear, and the chief Job's end.

While it follows, the progress is also published on the chief Job (`job_progress.py`).
Ctrl-C leaves the experiment running in the cluster (`tunecluster status`, `down`).
"""

from __future__ import annotations

from typing import Optional

from tunecluster.backends.base import Say, Session
from tunecluster.backends.kubernetes.client import Cluster
from tunecluster.backends.kubernetes.job_progress import JobProgress
from tunecluster.backends.kubernetes.pod_problems import ProblemClock
from tunecluster.backends.kubernetes.pods import job_state, read_shared_json, role_pods, watch_once
from tunecluster.backends.kubernetes.render import Names, selector
from tunecluster.backends.kubernetes.transfer import pull
from tunecluster.backends.verdict import Outcome
from tunecluster.core.rundir import RunDir, read_json, write_json
from tunecluster.tuning.results import to_csv
from tunecluster.tuning.spec import Experiment

FINAL_FILES = ("progress.json", "results.json", "results.csv")


def final_copies(progress: Optional[dict], results: Optional[dict]) -> bool:
    """Whether the mirrored progress.json and results.json are both the finished search's."""
    return bool((progress or {}).get("finished") and (results or {}).get("finished"))


class ProgressMirror:
    """Copies the chief's progress.json and results.json (and results.csv) into the run folder."""

    def __init__(self, cluster: Cluster, spec: Experiment, run: RunDir):
        self.cluster, self.spec, self.run = cluster, spec, run

    def refresh(self) -> bool:
        """Copy them through the running chief pod; False when there is none (or nothing came)."""
        chief = [p for p in role_pods(self.cluster, self.spec.name, "chief") if p.status.phase == "Running"]
        refreshed = False
        if chief:
            for name, path in (("progress.json", self.run.progress), ("results.json", self.run.results_json)):
                document = read_shared_json(self.cluster, chief[-1].metadata.name, name)
                if document is not None:
                    write_json(path, document)
                    refreshed = True
                    if name == "results.json":
                        self.run.results_csv.write_text(to_csv(document))
        return refreshed

    def from_volume(self) -> None:
        """The final files straight from the volume (the chief left before they were mirrored)."""
        pull(self.cluster, self.spec, self.run.root, require_model=False, names=FINAL_FILES)


class KubernetesSession(Session):
    """Watches the experiment's pods and chief Job while the live view draws."""

    def __init__(self, cluster: Cluster, spec: Experiment, run: RunDir, say: Say):
        self.cluster, self.spec, self.run, self.say = cluster, spec, run, say
        self.names = Names(spec.name)
        self.mirror = ProgressMirror(cluster, spec, run)
        self.chief_job: Optional[str] = None  # "Complete" / "Failed" once the chief Job ended
        self.problem: Optional[str] = None
        self.clock = ProblemClock.for_spec(cluster, spec)
        self.marks = JobProgress(cluster, self.names.chief)  # trials done/total on the chief Job

    def alive(self) -> bool:
        watch_once(self.cluster, "pods", selector(self.spec.name), 1)  # wakes early on any pod change
        # once the search has finished (the mirrored progress says so), a pod's problem changes
        # nothing of its results: the chief Job's end decides
        finished = bool((read_json(self.run.progress) or {}).get("finished"))
        for pod in [] if finished else role_pods(self.cluster, self.spec.name):
            problem = self.clock.check(pod) if pod.status.phase == "Pending" else None
            if problem:
                self.problem = problem
                return False
        for note in self.clock.notes:  # e.g. the cluster autoscaler is adding a node
            self.say(note)
        self.clock.notes.clear()
        if self.mirror.refresh():
            self.marks.publish(read_json(self.run.progress))
        self.chief_job = job_state(self.cluster, self.names.chief)
        return self.chief_job is None

    def interrupt(self) -> str:
        return ("interrupted: the experiment keeps running in the cluster; follow it with "
                f"`tunecluster status --dir {self.run.root}`, stop it with `tunecluster down --dir {self.run.root}`")

    def outcome(self) -> Outcome:
        logs = f"see `tunecluster logs chief --dir {self.run.root}`"
        if self.problem:
            return Outcome(read_json(self.run.progress) or {}, None, "did not start", logs_hint=logs,
                           failure=self.problem)
        self.mirror.refresh()
        progress = read_json(self.run.progress) or {}
        if self.chief_job == "Complete" and not final_copies(progress, read_json(self.run.results_json)):
            # the chief wrote its final state and left before it was mirrored through its pod (or
            # between the two reads: a final progress.json beside an earlier results.json)
            self.mirror.from_volume()
            progress = read_json(self.run.progress) or {}
        self.marks.publish(progress)
        code = {"Complete": 0, "Failed": 1}.get(self.chief_job or "")
        return Outcome(progress, code, f"job ended {self.chief_job or 'without finishing'}", logs_hint=logs)
