"""The end of a followed Kubernetes experiment: the local copies count as final only when both
progress.json and results.json are the finished search's. A final progress.json beside an earlier
results.json (the chief pod left between the two reads through it: seen in CI as a results table
with two RUNNING trials after `attach --follow`) sends `outcome` to the volume for both."""

from __future__ import annotations

from tunecluster.backends.kubernetes.follow import final_copies


def test_copies_are_final_only_when_both_files_say_the_search_finished():
    assert final_copies({"finished": True}, {"finished": True, "trials": []})
    assert not final_copies({"finished": True}, {"finished": False, "trials": [{"status": "RUNNING"}]})
    assert not final_copies({"finished": True}, None)  # never mirrored
    assert not final_copies({"finished": False}, {"finished": True})
    assert not final_copies(None, None)
