"""The run folder on this machine: where `up` puts a run, the guards that keep an earlier run from
being overwritten (`--force`, `--resume`), and finding the run a later command means (`--dir`, or
the only run under ./tunecluster-runs)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional, TextIO

from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, write_atomic
from tunecluster.tuning.spec import Experiment, dump_spec, load_spec

DEFAULT_RUNS = "tunecluster-runs"


def run_dir_for(dir: Optional[Path], name: str) -> RunDir:
    """`--dir`, else ./tunecluster-runs/<experiment>."""
    return RunDir(dir if dir is not None else Path(DEFAULT_RUNS) / name)


def existing_run(dir: Optional[Path]) -> RunDir:
    """The run named by --dir, or the only run under ./tunecluster-runs."""
    if dir is not None:
        return RunDir(dir).require_run()
    runs = sorted(p for p in Path(DEFAULT_RUNS).glob("*") if (p / "spec.yaml").is_file())
    if len(runs) == 1:
        return RunDir(runs[0])
    if not runs:
        raise UsageError(f"no run found under ./{DEFAULT_RUNS}; pass --dir PATH")
    raise UsageError(f"several runs under ./{DEFAULT_RUNS} ({', '.join(p.name for p in runs)}); pass --dir PATH")


def check_run_dir(run: RunDir, spec: Experiment, *, force: bool, resume: bool) -> None:
    """Refuse, with one line, to clobber an earlier run or to resume what cannot be resumed;
    writes nothing (`up --example pima-all` checks every phase's folder before the first runs)."""
    if run.root.exists() and any(run.root.iterdir()):
        if not run.exists():
            raise UsageError(
                f"--dir {run.root} exists and is not a tunecluster run; choose an empty or new folder"
            )
        previous = load_spec(run.spec)
        if resume:
            if previous.name != spec.name:
                raise UsageError(f"--dir {run.root} holds experiment {previous.name!r}, not {spec.name!r}; "
                                 "pass the matching spec or another --dir")
            if run.finished():
                raise UsageError(f"the run in {run.root} already finished; nothing to resume "
                                 "(use --force to start it over)")
        elif not force:
            state = "a finished run" if run.finished() else "an interrupted run"
            hint = "--force to replace it" if run.finished() else "--resume to continue it or --force to replace it"
            raise UsageError(f"--dir {run.root} already holds {state} of {previous.name!r}; "
                             f"pass another --dir, or {hint}")
    elif resume:
        raise UsageError(f"--resume: {run.root} holds no run to resume")


def prepare_run_dir(run: RunDir, spec: Experiment, *, force: bool, resume: bool,
                    workers: Optional[int] = None, max_time: Optional[str] = None) -> Experiment:
    """Check the folder (`check_run_dir`), then: on --resume, return the spec the run was started
    with (with `workers` and `max_time` changed when given, and spec.yaml rewritten so every role
    sees them); otherwise replace an earlier run (--force) and write the new spec."""
    check_run_dir(run, spec, force=force, resume=resume)
    if resume:
        previous = load_spec(run.spec)
        from tunecluster.tuning.overrides import Overrides

        resumed = Overrides(workers=workers, max_time=max_time).apply(previous)
        if resumed == previous:
            return previous
        write_atomic(run.spec, dump_spec(resumed))
        return resumed
    if run.root.exists() and any(run.root.iterdir()):
        shutil.rmtree(run.root)
    run.root.mkdir(parents=True, exist_ok=True)
    write_atomic(run.spec, dump_spec(spec))
    return spec


def print_log_file(run: RunDir, role: str, tail: int, out: TextIO = sys.stdout) -> None:
    """The last `tail` lines (0: all) of `<run>/logs/<role>.log`; a UsageError naming the roles
    that have logs when this one has none."""
    path = run.log(role)
    if not path.is_file():
        names = sorted(p.stem for p in run.logs.glob("*.log"))
        raise UsageError(f"no log for {role!r}; roles with logs: {', '.join(names) or 'none'}")
    lines = path.read_text(errors="replace").splitlines()
    out.write("\n".join(lines[-tail:] if tail else lines) + "\n")
