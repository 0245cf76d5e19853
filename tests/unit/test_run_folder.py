"""The run folder's guards: --force, --resume, and a resumed run's worker count."""

from __future__ import annotations

import pytest

from tunecluster.backends.run_folder import check_run_dir, prepare_run_dir
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, write_json
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.spec import load_spec


def test_resume_with_another_worker_count_rewrites_the_spec(tmp_path):
    """`up --resume --workers 4`: every role reads spec.yaml, so the chief sizes its pool and its
    exit wait for 4 workers (before, the file kept the old count while 4 workers started)."""
    run = RunDir(tmp_path / "run")
    spec = Overrides(workers=2).apply(example_spec("pima-optimizer"))
    prepare_run_dir(run, spec, force=False, resume=False)
    resumed = prepare_run_dir(run, spec, force=False, resume=True, workers=4)
    assert resumed.cluster.workers == 4 and load_spec(run.spec).cluster.workers == 4
    assert prepare_run_dir(run, spec, force=False, resume=True).cluster.workers == 4  # kept


def test_guards(tmp_path):
    run = RunDir(tmp_path / "run")
    spec = example_spec("pima-optimizer")
    with pytest.raises(UsageError, match="holds no run to resume"):
        prepare_run_dir(run, spec, force=False, resume=True)
    prepare_run_dir(run, spec, force=False, resume=False)
    with pytest.raises(UsageError, match="--resume to continue it or --force to replace it"):
        check_run_dir(run, spec, force=False, resume=False)
    with pytest.raises(UsageError, match="not 'pima-units'"):
        check_run_dir(run, example_spec("pima-units"), force=False, resume=True)
    write_json(run.progress, {"finished": True})
    with pytest.raises(UsageError, match="already finished; nothing to resume"):
        prepare_run_dir(run, spec, force=False, resume=True)
    (run.root / "extra").write_text("x")
    prepare_run_dir(run, spec, force=True, resume=False)  # --force replaces it
    assert not (run.root / "extra").exists() and run.spec.is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a tunecluster run"):
        prepare_run_dir(RunDir(other), spec, force=True, resume=False)
    assert (other / "notes.txt").read_text() == "mine"
