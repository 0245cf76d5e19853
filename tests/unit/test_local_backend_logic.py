"""The local launcher's wait for the chief after the last worker left (`chief_code_after_workers`),
with a scripted stand-in for the cluster: the chief exits at the very moment between two looks.
The real path (exporter and chief leaving together) runs in every local search test."""

from __future__ import annotations

from tunecluster.backends.local.backend import chief_code_after_workers


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
