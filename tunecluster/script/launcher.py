"""Run an unmodified Keras Tuner script as one role of a tunecluster run.

    python -m tunecluster.script search.py [ARGS...]      (what `tunecluster up --script` starts)

The role comes from Keras Tuner's own variables (`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`,
`KERASTUNER_ORACLE_PORT`) and the run from tunecluster's (`TUNECLUSTER_RUN_DIR`,
`TUNECLUSTER_SPEC`, the token). Before the script runs, `kt_compat.script_hooks` routes its tuner
through `ScriptSession`:

- the tuner's `directory`/`project_name` become the run folder's `kt/<experiment>` whatever the
  script passes; `overwrite=True` is ignored with a warning (it would delete the shared search,
  a resumed one included: `up --force` starts a run over, `up --resume` continues it);
- `search()` on the chief serves the script's oracle with tunecluster's chief
  (`chief_role`); on a worker it runs Keras Tuner's loop hardened by `worker_role`;
- `sys.argv` is `[script, ARGS...]` (the arguments after `--` of `up --script`), and the script
  runs in its own folder (relative paths in it and in its arguments are read from there).

A script that cannot run this way ends the role with one line and exit code 2: it never calls
`search()`, builds a second tuner, raises before or after its search, or exits non-zero.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

from tunecluster.core import env as role_env
from tunecluster.core.env import RoleEnv, read_role_env
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir
from tunecluster.tuning.spec import Experiment, load_spec

log = logging.getLogger("tunecluster.script")


class ScriptRefused(BaseException):
    """Raised inside the script (through its own `except Exception`) when it cannot run this way."""


class ScriptSession:
    """The hooks one script's run goes through (see the module docstring)."""

    def __init__(self, script: Path, role: RoleEnv, run: RunDir, spec: Experiment):
        self.script, self.role, self.run, self.spec = script, role, run, spec
        self.tuners = 0
        self.searched = False
        self.guard = None

    def place(self, tuner, directory, project_name, overwrite):
        self.tuners += 1
        if self.tuners > 1:
            raise ScriptRefused(
                f"{self.script.name} builds a second tuner ({type(tuner).__name__}); tunecluster runs one "
                "search per script: keep one tuner (run the other search as its own script)")
        given = os.path.join(str(directory or "."), str(project_name or "untitled_project"))
        log.info("the tuner's directory %s is the run folder's %s", given, self.run.kt_project(self.spec.name))
        if overwrite:
            log.warning("overwrite=True ignored: it would delete the run folder's search (a resumed run "
                        "included); `tunecluster up --force` starts the run over, `up --resume` continues it")
        return str(self.run.kt_dir), self.spec.name, False

    def tuner_built(self, tuner) -> None:
        if not self.role.is_chief and self.guard is None:
            from tunecluster.script.worker_role import WorkerGuard

            self.guard = WorkerGuard(tuner, self.spec, self.run, self.role)

    def search(self, tuner, original, fit_args: tuple, fit_kwargs: dict):
        if self.searched:
            raise ScriptRefused(f"{self.script.name} calls search() twice; tunecluster runs one search per "
                                "script: call it once")
        self.searched = True
        if self.role.is_chief:
            from tunecluster.script.chief_role import serve_search

            return serve_search(tuner, self.spec, self.run, self.role, fit_args, fit_kwargs)
        return self.guard.search(original, fit_args, fit_kwargs)


def _where(exc: BaseException, script: Path) -> str:
    """` at search.py:12 (`line`)` for the script's own frame closest to the error, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == script]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at {script.name}:{frame.lineno} ({(frame.line or '').strip()})"


def _argv_hint(exc: BaseException, script: Path, args: Sequence[str]) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == script]
    if frames and "sys.argv" in (frames[-1].line or "") and not args:
        return f"; it reads sys.argv: pass its arguments after `--` (tunecluster up --script {script.name} -- ARGS)"
    return ""


def run_script(path: str, args: Sequence[str], environ=os.environ) -> int:
    """Run the script in the role its environment names; return the role's exit code."""
    script = Path(path).resolve()
    if not script.is_file():
        raise UsageError(f"{path}: no such script; give the path of the Keras Tuner script")
    role = read_role_env(environ, default_id="tuner0")
    if not role.spec_path:
        raise UsageError(f"{role_env.SPEC} is not set; start script runs with `tunecluster up --script {path}`")
    spec = load_spec(role.spec_path)
    run = RunDir(Path(role.run_dir or ".").resolve())
    import keras  # noqa: F401  the real Keras, before the chief's patches (its stand-in is for spec runs)

    from tunecluster.kt_compat import install, script_hooks

    install("chief" if role.is_chief else "worker")  # the version gate and the role's patches
    session = ScriptSession(script, role, run, spec)
    script_hooks.install(session)
    from tunecluster.cluster.worker.interruptions import TrialInterrupted
    from tunecluster.script.exits import RoleExit

    saved_argv, saved_path, saved_cwd = list(sys.argv), list(sys.path), os.getcwd()
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    os.chdir(script.parent)  # relative paths in the script and its arguments: from the script's folder
    code: Optional[int] = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except ScriptRefused as refused:
        raise UsageError(str(refused)) from None
    except RoleExit as stopped:
        if stopped.reason:
            print(f"error: {stopped.reason}", file=sys.stderr, flush=True)
        return stopped.code
    except TrialInterrupted:
        return 143
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) or exc.code is None else 1
        if code not in (0, None):
            when = "after" if session.searched else "before"
            raise UsageError(f"{script.name} exited with code {code} {when} its search{_where(exc, script)}; "
                             "a script run by tunecluster must end with code 0 in every role") from None
    except UsageError:
        raise
    except Exception as exc:
        when = "after" if session.searched else "before"
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UsageError(f"{script.name} raised {type(exc).__name__}: {first} {when} its search"
                         f"{_where(exc, script)}{_argv_hint(exc, script, args)}") from None
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
    if not session.searched:
        raise UsageError(f"{script.name} never called search() on a Keras Tuner tuner; tunecluster runs the "
                         "script's tuner.search(...): call it (not in a function nobody calls, nor under "
                         "`if __name__ == ...` other than \"__main__\")")
    return 0
