"""`storage_loss`: which failures mean the shared run folder is gone (the trial goes back to the
chief, the worker exits 74) and which are the training's own (the trial is FAILED)."""

from __future__ import annotations

import errno
import os
import time

from tunecluster.cluster.worker.storage_loss import probe, storage_lost


def test_a_broken_mount_named_in_the_message_is_storage_loss(tmp_path):
    # the error the Kubernetes bed's node-loss test met (h5py names the path in the message)
    error = OSError(errno.ECONNABORTED, f"Unable to synchronously create file (unable to open file: "
                                        f"name = '{tmp_path}/kt/exp/trial_0/execution_0.weights.h5')")
    assert type(error).__name__ == "ConnectionAbortedError"
    reason = storage_lost(error, tmp_path)
    assert reason == f"ConnectionAbortedError [Errno 103] Software caused connection abort on {tmp_path}"


def test_the_error_may_be_the_cause_of_another_and_carry_its_path_as_filename(tmp_path):
    try:
        try:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(tmp_path / "kt" / "x"))
        except OSError as inner:
            raise RuntimeError("checkpoint failed") from inner
    except RuntimeError as outer:
        assert "Errno 107" in storage_lost(outer, tmp_path)


def test_the_same_errno_elsewhere_with_a_readable_folder_is_the_trainings_failure(tmp_path):
    # e.g. the user's code downloading data over a connection that broke
    assert storage_lost(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), tmp_path) is None
    assert storage_lost(OSError(errno.EIO, "read error", "/data/elsewhere.csv"), tmp_path) is None


def test_other_errors_on_the_shared_folder_are_the_trainings_failure(tmp_path):
    assert storage_lost(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "kt")), tmp_path) is None
    assert storage_lost(ValueError("Input 0 of layer dense is incompatible"), tmp_path) is None


def test_any_failure_with_the_folder_gone_is_storage_loss(tmp_path):
    gone = tmp_path / "unmounted"
    assert storage_lost(ValueError("whatever the training said"), gone) == (
        f"{gone} is gone (No such file or directory)")


def test_an_unreadable_folder_is_named_with_its_error(tmp_path, monkeypatch):
    def broken(path):
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(path))

    monkeypatch.setattr(os, "listdir", broken)
    assert probe(tmp_path) == f"{tmp_path} cannot be read: OSError [Errno 107] Transport endpoint is not connected"


def test_a_hung_mount_does_not_hang_the_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "listdir", lambda path: time.sleep(5))
    started = time.monotonic()
    assert probe(tmp_path, timeout=0.2) == f"{tmp_path} did not answer within 0.2 s"
    assert time.monotonic() - started < 2
