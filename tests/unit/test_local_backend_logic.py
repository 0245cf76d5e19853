"""The local launcher's wait for the chief after the last worker left (`chief_code_after_workers`),
with a scripted stand-in for the cluster: the chief exits at the very moment between two looks.
The real path (exporter and chief leaving together) runs in every local search test. And the one
line for a run whose workers are all gone (`workers_gone`): a lost export says that the search is
complete and that a resume exports it."""

from __future__ import annotations

from tunecluster.backends.local.backend import chief_code_after_workers, workers_gone
from tunecluster.core.rundir import RunDir


class ChiefExitsBetweenLooks:
    """chief_final() says "running"; the chief exits (code 0) just before chief_exit() looks."""

    def __init__(self, looks_before_exit: int):
        self.looks = looks_before_exit
        self.exited = False

    def chief_final(self):
        return 0 if self.exited else None

    def chief_exit(self):
        self.looks -= 1
        if self.looks <= 0:
            self.exited = True
        return 0 if self.exited else None


def test_a_chief_that_exits_between_two_looks_counts_as_finished():
    # the race CI met: "every worker exited before the search ended" with every role at exit code 0
    assert chief_code_after_workers(ChiefExitsBetweenLooks(1), wait_s=15) == 0
    assert chief_code_after_workers(ChiefExitsBetweenLooks(3), wait_s=15) == 0


class ChiefKeepsRunning:
    def chief_final(self):
        return None

    def chief_exit(self):
        return None


class ChiefCrashedToBeRestarted:
    def chief_final(self):
        return None  # exited with 1, a restart is due: not final

    def chief_exit(self):
        return 1


def test_no_final_code_when_the_chief_does_not_finish():
    assert chief_code_after_workers(ChiefKeepsRunning(), wait_s=0.3) is None
    assert chief_code_after_workers(ChiefCrashedToBeRestarted(), wait_s=15) is None


def test_workers_gone_names_a_lost_export_and_the_resume_that_makes_it(tmp_path):
    run = RunDir(tmp_path / "run")
    progress = {"counts": {"completed": 4, "running": 0, "total": 4},
                "export": {"state": "claimed", "by": "tuner1", "message": None}}
    line = workers_gone(progress, ["worker-1"], "E0000 cuInit", run)
    assert line.startswith("every worker exited before the best model was exported (tuner1 was exporting it; "
                           "failed: worker-1); the search itself is complete")
    assert f"tunecluster up --dir {run.root} --resume" in line and "cuInit" not in line


def test_workers_gone_before_the_end_of_the_search_gives_the_last_worker_error(tmp_path):
    progress = {"counts": {"completed": 1, "running": 1, "total": 2}, "export": {"state": None}}
    line = workers_gone(progress, ["worker-0", "worker-1"], "error: out of memory", RunDir(tmp_path))
    assert line == ("every worker exited before the search ended (worker-0, worker-1); "
                    "last worker error: error: out of memory")
    assert workers_gone({}, [], "(no log)", RunDir(tmp_path)).startswith(
        "every worker exited before the search ended (no error code)")
