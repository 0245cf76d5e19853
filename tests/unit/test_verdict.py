"""The one verdict on a followed search, as every backend reports its end."""

from __future__ import annotations

import pytest

from tunecluster.backends.verdict import Outcome, verdict
from tunecluster.core.errors import RunFailure, UsageError

DONE = {"finished": True, "export": {"state": "done"}}


def test_a_finished_search_is_zero():
    assert verdict(Outcome(DONE, 0, "exited with code 0")) == 0
    assert verdict(Outcome(DONE, 0, "job ended Complete")) == 0


@pytest.mark.parametrize("outcome, error, text", [
    (Outcome({}, None, "did not end", usage_error="hypermodel: no function 'x'"), UsageError, "hypermodel: no function 'x'"),
    (Outcome({}, None, "did not end", failure="every worker exited before the search ended (worker-0)"),
     RunFailure, "every worker exited"),
    (Outcome({"finished": True, "search_failed": "Number of consecutive failures exceeded the limit of 2."}, 0,
             "exited with code 0"), RunFailure, "the search stopped: Number of consecutive failures"),
    (Outcome({"finished": True, "export": {"state": "failed", "message": "OSError: disk full"}}, 0,
             "exited with code 0"), RunFailure, "exporting the best model failed: OSError: disk full"),
    (Outcome({}, 2, "exited with code 2", chief_error="error: spec.yaml: tuner.kind: bad"), UsageError,
     "spec.yaml: tuner.kind: bad"),
    (Outcome({}, 1, "exited with code 1", chief_error="RuntimeError: boom"), RunFailure,
     "the chief exited with code 1: RuntimeError: boom"),
    (Outcome({}, 1, "job ended Failed", logs_hint="see `tunecluster logs chief --dir run`"), RunFailure,
     "the chief job ended Failed; see `tunecluster logs chief --dir run`"),
    (Outcome({"finished": False}, 0, "exited with code 0", logs_hint="see run/logs"), RunFailure,
     "the search did not finish; see run/logs"),
])
def test_each_bad_end_is_one_line(outcome, error, text):
    with pytest.raises(error) as raised:
        verdict(outcome)
    assert text in str(raised.value) and "\n" not in str(raised.value)


def test_summary_lines():
    outcome = Outcome(DONE, 0, "exited with code 0", failed_roles=["worker-1"], logs_hint="see run/logs", elapsed=12.34)
    assert outcome.summary_lines() == ["search ended in 12.3 s (the chief exited with code 0)",
                                       "roles that failed: worker-1 (see run/logs)"]
