"""Unpacking what comes back from a container or a pod: always closed, always filtered, on
Pythons with and without tarfile's extraction filters."""

from __future__ import annotations

import io
import tarfile

import pytest

from tunecluster.backends.kubernetes.transfer import unpack_pulled
from tunecluster.core import archives
from tunecluster.core.errors import RunFailure


def _tar(files: dict, mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def opened(monkeypatch):
    """Every TarFile the code opens, to check that it was closed."""
    seen = []
    real = tarfile.open

    def recording(*args, **kwargs):
        archive = real(*args, **kwargs)
        seen.append(archive)
        return archive

    monkeypatch.setattr(tarfile, "open", recording)
    return seen


def test_files_are_unpacked_and_the_archive_closed(tmp_path, opened):
    names = archives.extract_tar(io.BytesIO(_tar({"best/metrics.json": b"{}", "results.json": b"[]"})), tmp_path)
    assert names == ["best/metrics.json", "results.json"]
    assert (tmp_path / "best" / "metrics.json").read_bytes() == b"{}"
    assert opened and all(a.closed for a in opened)


@pytest.mark.parametrize("filters", [True, False], ids=["with-filters", "python-3.10.0-3.10.11"])
def test_a_member_outside_the_target_is_refused(tmp_path, monkeypatch, filters):
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with pytest.raises((RunFailure, tarfile.TarError)):
        archives.extract_tar(io.BytesIO(_tar({"../escaped": b"x"})), tmp_path / "in")
    assert not (tmp_path / "escaped").exists()
    assert archives.extract_tar(io.BytesIO(_tar({"ok.txt": b"y"})), tmp_path / "fine") == ["ok.txt"]


def test_a_pull_without_an_exported_model_says_so(tmp_path, opened):
    pulled = io.BytesIO(_tar({"results.json": b"[]"}))
    with pytest.raises(RunFailure, match="no exported best model"):
        unpack_pulled(pulled, tmp_path, "exp")
    pulled.seek(0)
    assert unpack_pulled(pulled, tmp_path, "exp", require_model=False) == ["results.json"]
    assert all(a.closed for a in opened)
