"""The Backend interface: what every place that can run an experiment's cluster provides.

The CLI looks a backend up once (`backends.get_backend(name)` for `up`/`render`,
`backends.backend_of_run(run)` for a run that exists) and calls only these methods; it never
compares backend names. Each implementation lives in its own package (`local/`, `compose/`,
`kubernetes/`), renders the same `cluster.plan.ClusterPlan`, and no backend imports another.

    backend = get_backend("local")
    backend.check(spec, options)                 # refuse what cannot work, before anything is written
    session = backend.up(spec, run, options, say)
    code = backend.follow(session, LiveView(run, console).follow, say)   # 0, or raises
    backend.status(run); backend.logs(run, "chief", ...); backend.pull(run, scratch); backend.down(run, ...)

`follow` is written once, here: the live view draws while the session's `alive()` polls the
cluster; Ctrl-C asks the session to stop (or to leave the cluster running); the end is judged by
the one verdict (`verdict.py`). `status` answers with one schema for every backend (`status.py`).
"""

from __future__ import annotations

import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Optional, TextIO

from tunecluster.backends.status import ClusterStatus
from tunecluster.backends.transfer_progress import TransferProgress
from tunecluster.backends.verdict import Outcome, verdict
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir
from tunecluster.tuning.spec import Experiment

Say = Callable[[str], None]  # prints one line for the user


@dataclass(frozen=True)
class UpOptions:
    """The options of `tunecluster up` that are not part of the spec."""

    port: Optional[int] = None  # the oracle port (local, and compose's published port)
    detach: bool = False
    resume: bool = False
    context: Optional[str] = None  # Kubernetes: kubeconfig context
    namespace: Optional[str] = None
    kubeconfig: Optional[str] = None
    tensorboard: Optional[bool] = None  # Kubernetes: a TensorBoard Deployment (None: the spec says)
    image: Optional[str] = None  # compose, kubernetes: the image the roles run (local refuses it)
    gpus: Optional[str] = None  # GPUs per worker: a number or "all" (each backend says what it can do)
    build: bool = False  # compose: build the image first
    force: bool = False  # replace an earlier run in the run folder
    project: Optional[Path] = None  # the spec's folder: where `tunecluster build` recorded the image
    script: tuple[str, ...] = ()  # `up --script`: the Keras Tuner script every role runs, and its arguments


@dataclass(frozen=True)
class ClusterAccess:
    """`--context`, `--namespace`, `--kubeconfig` of a command that follows a run (or `attach`)."""

    context: Optional[str] = None
    namespace: Optional[str] = None
    kubeconfig: Optional[str] = None

    def given(self) -> bool:
        return any((self.context, self.namespace, self.kubeconfig))


@dataclass(frozen=True)
class RenderOptions:
    """The options of `tunecluster render`."""

    namespace: Optional[str] = None
    include_secret: bool = False
    tensorboard: bool = False
    image: Optional[str] = None
    dir: Optional[Path] = None  # compose: the run folder the file refers to
    port: Optional[int] = None
    gpus: Optional[str] = None


@dataclass(frozen=True)
class DownOptions:
    keep_volume: bool = False  # Kubernetes: keep the volume claim
    volumes: bool = False  # compose: remove the volume too


class Session(ABC):
    """A cluster `up` started, as `follow` sees it."""

    run: RunDir

    @abstractmethod
    def alive(self) -> bool:
        """Poll the cluster (restart what died, mirror the progress file into the run folder);
        False once the search is over or cannot go on. Called every ~0.5 s by the live view."""

    @abstractmethod
    def interrupt(self) -> str:
        """Ctrl-C or SIGTERM while following: stop the cluster (or leave it running where that is
        the backend's promise); return the line that says what happened and how to go on."""

    @abstractmethod
    def outcome(self) -> Outcome:
        """After `alive()` turned False: how the search ended (for the verdict)."""

    def close(self) -> None:
        """Release what following held (always called)."""


class Backend(ABC):
    """One place to run an experiment's cluster (see the module docstring)."""

    name: ClassVar[str]
    runs_scripts: ClassVar[bool] = False  # `up --script`: this backend starts the script in every role

    # --- before a run ---------------------------------------------------------------------------
    def apply_options(self, spec: Experiment, options: UpOptions) -> tuple[Experiment, UpOptions]:
        """`up --image/--gpus/--build` as this backend understands them (the spec or the options
        changed), or a one-line UsageError where it cannot honour one. The base refuses them all."""
        for flag, value in (("--image", options.image), ("--gpus", options.gpus), ("--build", options.build)):
            if value:
                raise UsageError(f"{flag} is not supported by the {self.name} backend")
        return spec, options

    def check(self, spec: Experiment, options: UpOptions) -> None:
        """Refuse, with one line, what cannot work, before the run folder is written."""

    def check_script(self, options: UpOptions) -> None:
        """`up --script` on a backend that cannot start a script yet: one line."""
        if options.script and not self.runs_scripts:
            raise UsageError(f"--script does not run on the {self.name} backend; use --backend local, compose "
                             "or kubernetes (or turn the script into a spec: docs/spec.md)")

    @abstractmethod
    def render(self, spec: Experiment, options: RenderOptions) -> str:
        """What `up` would create, as text (`tunecluster render`); writes nothing."""

    def render_rbac(self, namespace: str, user: Optional[str], experiments: tuple[str, ...] = (),
                    storage_reader: bool = False) -> str:
        """The permissions a user needs to run tunecluster (`render --rbac`)."""
        raise UsageError(f"--rbac is for the kubernetes backend; the {self.name} backend needs no Role")

    # --- a run ----------------------------------------------------------------------------------
    @abstractmethod
    def up(self, spec: Experiment, run: RunDir, options: UpOptions, say: Say) -> Optional[Session]:
        """Start the chief and the workers of `spec` for the prepared run folder `run`; return the
        session to follow (None with `options.detach`: the cluster runs on its own)."""

    def follow(self, session: Session, view: Callable[[Callable[[], bool]], object], say: Say) -> int:
        """Follow a started cluster to its end (see the module docstring); return the exit code
        (0), or raise the verdict's one-line error; 130 when interrupted."""
        started = time.time()
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(*_):  # `tunecluster down`, or a service manager: stop like Ctrl-C
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            try:
                view(session.alive)
            except KeyboardInterrupt:
                say("")
                say(session.interrupt())
                return 130
            outcome = session.outcome()
        finally:
            signal.signal(signal.SIGTERM, previous)
            session.close()
        outcome.elapsed = outcome.elapsed or time.time() - started
        for line in outcome.summary_lines():
            say(line)
        return verdict(outcome)

    def best_hint(self, run: RunDir, spec: Experiment) -> str:
        """Where the best model (or configuration) is, after a finished `up`."""
        if spec.run_trial:  # no model: the best configuration and its scores
            return (f"best configuration: {run.best_hyperparameters} (scores: {run.best_metrics})"
                    if run.best_metrics.exists() else "nothing exported (no completed trial)")
        return f"best model: {run.best_model}" if run.best_model.exists() else "no model exported (no completed trial)"

    def attach(self, name: str, run: RunDir, access: ClusterAccess, say: Say, *, follow: bool) -> Optional[Session]:
        """Rebuild the run folder `run` of the experiment `name` from where it runs (`tunecluster
        attach`); return a session to follow with `follow` while it still runs, else None."""
        raise UsageError(f"attach is for Kubernetes experiments; a {self.name} run lives in its run folder "
                         "(pass --dir to the other commands)")

    # --- after a run (or while it runs) ---------------------------------------------------------
    def use_cluster(self, access: ClusterAccess) -> None:
        """`--context/--namespace/--kubeconfig` for the commands that follow a run: the Kubernetes
        backend talks to that cluster instead of the one the run recorded; others refuse them."""
        if access.given():
            raise UsageError(f"--context, --namespace and --kubeconfig are for Kubernetes runs; this is a "
                             f"{self.name} run")

    @abstractmethod
    def status(self, run: RunDir) -> ClusterStatus:
        """Each role's state and the search's progress (one schema for every backend)."""

    def refresh(self, run: RunDir) -> None:
        """Bring the run folder's progress.json / results.json / results.csv up to date with the
        cluster (where they live elsewhere: a volume)."""

    @abstractmethod
    def logs(self, run: RunDir, role: str, *, tail: int, follow: bool, out: TextIO) -> None:
        """Print a role's log (`tail` lines, 0: all); with `follow`, keep printing until it ends."""

    @abstractmethod
    def pull(self, run: RunDir, scratch: Path, progress: Optional[TransferProgress] = None) -> RunDir:
        """A run folder on this machine that holds the best model's files and the results
        (the run folder itself, or a copy in `scratch`); bytes copied are reported to `progress`."""

    @abstractmethod
    def down(self, run: RunDir, options: DownOptions) -> str:
        """Stop what runs and remove what the backend made (keeping the run folder); return the
        line that says what was done."""

    def tensorboard(self, run: RunDir, *, host: str, port: Optional[int], deploy: bool, say: Say) -> int:
        """Serve TensorBoard for the run until Ctrl-C/SIGTERM; return the exit code."""
        from tunecluster.backends import tensorboard_server

        if deploy:
            raise UsageError("--deploy is for Kubernetes runs; this run's TensorBoard runs here")
        logdir = tensorboard_server.logdir_of(run.root)
        proc, url = tensorboard_server.start(logdir, host=host, port=port, log_path=run.logs / "tensorboard.log")
        try:  # (a Ctrl-C right after the URL is printed still stops TensorBoard)
            say(f"TensorBoard for {run.root.name}: {url} (logdir {logdir}; HParams tab: {url}#hparams); "
                "Ctrl-C to stop")
            code = proc.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            tensorboard_server.stop(proc)
        return 0 if code in (0, -2, -15) else 1
