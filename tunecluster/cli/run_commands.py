"""`tunecluster init`, `up` and `render`: write an example, start a search on a backend and
follow it, or print what `up` would create."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Optional

import typer

from tunecluster.backends import get_backend
from tunecluster.backends.base import RenderOptions, UpOptions
from tunecluster.backends.run_folder import prepare_run_dir, run_dir_for
from tunecluster.cli.app import (KUBE_CONTEXT, KUBE_NAMESPACE, KUBECONFIG, BackendName, TunerKind, app,
                                 console, errors_to_exit, say)
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.preflight import preflight
from tunecluster.tuning.spec import Experiment
from tunecluster.tuning.spec_source import resolve_spec
from tunecluster.ui.live import LiveView
from tunecluster.ui.tables import phase_table, print_wide

UP_TABLE_ROWS = 25  # the best trials `up` prints at the end (`results` prints them all)


@app.command()
@errors_to_exit
def init(
    example: str = typer.Option("pima", "--example", help="pima (= pima-comprehensive) or a phase: "
                                "pima-optimizer, pima-units, pima-layers, pima-comprehensive, pima-conditional, "
                                "pima-baseline; or pima-forest "
                                "(a scikit-learn forest through run_trial: writes forest.py); or pima-script (the comprehensive "
                                "search as a plain Keras Tuner script, pima_search.py, for `up --script`)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
):
    """Write an editable tunecluster.yaml, model.py (or forest.py) and the example CSV into the current
    folder (pima-script: a plain Keras Tuner script and the CSV)."""
    from tunecluster.tuning.examples import SCRIPT_EXAMPLE, write_template

    for path in write_template(Path.cwd(), example, force=force):
        console.print(f"wrote {path.name}")
    if example == SCRIPT_EXAMPLE:
        console.print("next: tunecluster up --script pima_search.py --workers 2 -- diabetes.csv")
    else:
        console.print("next: edit tunecluster.yaml / model.py, then run `tunecluster up`")


@app.command(context_settings={"allow_extra_args": True})
@errors_to_exit
def up(
    ctx: typer.Context,
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="Spec file (default: ./tunecluster.yaml, "
                                        "else the embedded pima-comprehensive example)."),
    example: Optional[str] = typer.Option(None, "--example", help="Run an embedded example instead: "
                                          "pima-optimizer, pima-units, pima-layers, pima-comprehensive, "
                                          "pima-conditional (architecture simple/complex choosing the ranges), "
                                          "pima-baseline (the tutorial's untuned model), "
                                          "pima-all (the four phases and the baseline one after another, with "
                                          "the tutorial's claims beside this run's findings; --dir holds one "
                                          "folder per phase), or "
                                          "pima-forest (a scikit-learn forest through run_trial, no Keras model)."),
    script: Optional[Path] = typer.Option(None, "--script", help="Run this unmodified Keras Tuner script in "
                                          "every role instead of a spec (its tuner, objective, max_trials and seed "
                                          "are the script's); arguments after `--` are its sys.argv[1:]; -f FILE "
                                          "may give its cluster: (and name:). See docs/from-a-script.md."),
    backend: Optional[BackendName] = typer.Option(None, "--backend", help="Where to run (default: the spec's cluster.backend)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Number of workers (with --resume: "
                                          "continue with this many)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Run directory (default: ./tunecluster-runs/<name>)."),
    max_trials: Optional[int] = typer.Option(None, "--max-trials", min=1, help="Override tuner.max_trials."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Override fit.epochs (and Hyperband's and ASHA's max_epochs)."),
    tuner: Optional[TunerKind] = typer.Option(None, "--tuner", help="Override tuner.kind."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override tuner.seed."),
    max_time: Optional[str] = typer.Option(None, "--max-time", help="Time budget: no new trial starts this "
                                           "long after the first one did, e.g. 90s, 30m, 8h (tuner.max_time; "
                                           "with --resume: the resumed run's budget, counted from the same start)."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="Oracle port (default: a free one)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier run in --dir."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --dir."),
    detach: bool = typer.Option(False, "--detach", help="Start the cluster and return at once "
                                "(roles that die are then not restarted)."),
    insecure: bool = typer.Option(False, "--insecure", help="Serve the oracle without a token, so "
                                  "unmodified Keras Tuner workers can join (anyone who reaches the port "
                                  "can drive the search)."),
    tls: bool = typer.Option(False, "--tls", help="Encrypt the oracle port with a certificate made for this run."),
    context: Optional[str] = KUBE_CONTEXT,
    namespace: Optional[str] = KUBE_NAMESPACE,
    kubeconfig: Optional[str] = KUBECONFIG,
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Kubernetes: also run TensorBoard on the volume."),
    image: Optional[str] = typer.Option(None, "--image", help="compose, kubernetes: the image every role runs "
                                        "(default: the spec's, else the one `tunecluster build` recorded for the "
                                        "project, else tunecluster:<version>); the local backend refuses it."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPUs per worker: compose a number or 'all' (reserved "
                                       "per container); kubernetes a number (nvidia.com/gpu per worker pod); local "
                                       "1 (a GPU of its own per worker) or all (every worker sees every GPU)."),
    build: bool = typer.Option(False, "--build", help="compose: build --image from this checkout's Dockerfile "
                               "first (for Kubernetes: `tunecluster build --push`)."),
    confirm_top: Optional[int] = typer.Option(None, "--confirm-top", min=1, help="Retrain the K best "
                                              "configurations after the search (default: confirm.top, 3)."),
    confirm_repeats: Optional[int] = typer.Option(None, "--confirm-repeats", min=1, help="Trainings per "
                                                  "confirmed configuration, fresh seeds (default: confirm.repeats, 3)."),
    no_confirm: bool = typer.Option(False, "--no-confirm", help="Skip the confirmation stage."),
    budget: Optional[str] = typer.Option(None, "--budget", help="Pima examples: tunecluster (default: 12 "
                                         "trials x 10 epochs per phase) or tutorial (the tutorial's own: "
                                         "optimizer 5x5, units 5x10, layers 5x10 as it gives none, "
                                         "comprehensive 20x10)."),
    chain: bool = typer.Option(False, "--chain", help="pima-all: each phase uses the confirmed winners of "
                               "the earlier ones (optimizer from phase 1, units from 2, depth from 3) "
                               "instead of the tutorial's fixed values."),
    holdout: Optional[float] = typer.Option(None, "--holdout", min=0.0, max=0.8, help="Hold out this "
                                            "fraction of the rows as a test split the search never sees "
                                            "(data.test_fraction; the examples default to 0, the tutorial's split)."),
):
    """Start a chief and workers, follow the search live, then retrain the best configurations
    with fresh seeds (the confirmation stage) and print the results table."""
    from tunecluster.tuning.examples import ALL_PHASES

    if force and resume:
        raise UsageError("give either --force or --resume, not both")
    # Ctrl-C (or `kill -INT`) stops every backend's run even when `up` runs as a shell's background
    # job, where SIGINT starts ignored and Python installs no KeyboardInterrupt handler of its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    overrides = Overrides(workers, max_trials, epochs, tuner.value if tuner else None, seed,
                          backend.value if backend else None, insecure, tls,
                          confirm=False if no_confirm else None, confirm_top=confirm_top,
                          confirm_repeats=confirm_repeats, holdout=holdout, max_time=max_time)
    options = UpOptions(port=port, detach=detach, resume=resume, context=context, namespace=namespace,
                        kubeconfig=kubeconfig, tensorboard=tensorboard or None, image=image, gpus=gpus, build=build,
                        force=force, project=(file.parent if file else Path.cwd()).resolve())
    if script is not None:
        refused = [flag for flag, given in (("--example", example), ("--max-trials", max_trials),
                                            ("--epochs", epochs), ("--tuner", tuner), ("--seed", seed),
                                            ("--confirm-top", confirm_top), ("--confirm-repeats", confirm_repeats),
                                            ("--holdout", holdout), ("--budget", budget),
                                            ("--chain", chain or None)) if given is not None]
        if refused:
            raise UsageError(f"{refused[0]} does not go with --script: the script's own tuner and search() "
                             "arguments decide it; change the script (or pass it arguments after `--`)")
        raise typer.Exit(_up_script(script, list(ctx.args), overrides, options, dir, force=force, workers=workers,
                                    settings=file))
    if ctx.args:
        raise UsageError(f"unexpected arguments {' '.join(ctx.args)}; only a --script run takes arguments (after `--`)")
    if example == ALL_PHASES:
        if file:
            raise UsageError("give either -f/--file or --example, not both")
        if detach:
            raise UsageError(f"--example {ALL_PHASES} runs the phases one after another; it cannot --detach")
        _up_all_phases(dir, overrides, options, force=force, resume=resume, budget=budget, chain=chain,
                       workers=workers)
    if chain:
        raise UsageError(f"--chain carries winners between the phases of --example {ALL_PHASES}; use it with that")
    spec, source = resolve_spec(str(file) if file else None, example, budget)
    spec = overrides.apply(spec)
    run = run_dir_for(dir, spec.name)
    preflight(spec)
    raise typer.Exit(_up_one(spec, run, source, options, force=force, workers=workers, max_time=max_time))


def _up_one(spec: Experiment, run: RunDir, source: str, options: UpOptions, *, force: bool,
            workers: Optional[int], max_time: Optional[str] = None) -> int:
    """Bring one experiment's cluster up, follow it, print its results; return the exit code."""
    backend = get_backend(spec.cluster.backend)
    spec, options = backend.apply_options(spec, options)  # --image/--gpus/--build as the backend means them
    backend.check_script(options)
    backend.check(spec, options)
    spec = prepare_run_dir(run, spec, force=force, resume=options.resume, workers=workers,
                           max_time=max_time)
    say(f"spec: {source}")
    session = backend.up(spec, run, options, say)
    if session is None:  # --detach
        return 0
    code = backend.follow(session, LiveView(run, console).follow, say)
    if code == 0:
        from tunecluster.cli.inspect_commands import print_results

        print_results(run, limit=UP_TABLE_ROWS)
        say(backend.best_hint(run, spec))
    return code


def _up_script(script: Path, args: list[str], overrides: Overrides, options: UpOptions, dir: Optional[Path],
               *, force: bool, workers: Optional[int], settings: Optional[Path] = None) -> int:
    """`up --script`: every role runs the script through `tunecluster.script` (docs/from-a-script.md);
    `settings` (`-f FILE`): a spec file with only `cluster:` (and `name:`)."""
    from tunecluster.script.tuner_spec import script_experiment, script_settings

    base, name = script_settings(settings) if settings is not None else (None, None)
    spec = overrides.apply(script_experiment(script, workers, base, name))
    run = run_dir_for(dir, spec.name)
    options = UpOptions(**{**options.__dict__, "script": (str(script.resolve()), *args),
                           "project": script.resolve().parent})
    return _up_one(spec, run, f"Keras Tuner script {script}", options, force=force, workers=workers,
                   max_time=overrides.max_time)


def _up_all_phases(dir: Optional[Path], overrides: Overrides, options: UpOptions, *, force: bool, resume: bool,
                   budget: Optional[str], chain: bool, workers: Optional[int]) -> None:
    """`up --example pima-all`: every phase, then the tutorial's claims beside this run."""
    from tunecluster.cli.pima_all import run_all_phases, summary
    from tunecluster.tuning.examples import ALL_PHASES

    root = dir if dir is not None else Path("tunecluster-runs") / ALL_PHASES
    outcomes, carried = run_all_phases(
        root, overrides, options, force=force, resume=resume, budget=budget, chain=chain,
        run_one=lambda spec, run, phase_options: _up_one(spec, run, f"example {spec.name}", phase_options,
                                                         force=force, workers=workers,
                                                         max_time=overrides.max_time),
        say=say, rule=console.rule)
    title, rows, _ = summary(outcomes, root, budget, chain, carried)
    print_wide(console, phase_table(title, rows))
    say(f"summary: {root / 'pima-all.json'}")
    raise typer.Exit(max(code for _, _, code, _ in outcomes))


@app.command()
@errors_to_exit
def render(
    backend: BackendName = typer.Option(BackendName.kubernetes, "--backend", help="What to render for."),
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="Spec file (default: ./tunecluster.yaml, "
                                        "else the embedded pima-comprehensive example)."),
    example: Optional[str] = typer.Option(None, "--example", help="Render an embedded example instead."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Number of workers."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Namespace of the objects "
                                            "(default: cluster.kubernetes.namespace, else 'default')."),
    include_secret: bool = typer.Option(False, "--include-secret", help="Also print the Secret with a "
                                        "freshly generated oracle token (keep the output private)."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Add the TensorBoard Deployment and Service."),
    rbac: bool = typer.Option(False, "--rbac", help="Print the Role (and RoleBinding for --user) a user "
                              "needs to run tunecluster in the namespace, instead of the experiment."),
    user: Optional[str] = typer.Option(None, "--user", help="With --rbac: bind the Role to this user."),
    experiment: list[str] = typer.Option([], "--experiment", help="With --rbac: the Role may read only these "
                                         "experiments' Secrets (repeat for several; default: any Secret by name)."),
    storage_reader: bool = typer.Option(False, "--storage-reader", help="With --rbac: also the ClusterRole (and "
                                        "binding for --user) that lets `up` read StorageClasses, to choose "
                                        "ReadWriteMany when the class offers it."),
    image: Optional[str] = typer.Option(None, "--image", help="The tunecluster image (default: compose "
                                        "tunecluster:<version>, kubernetes cluster.kubernetes.image)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="compose: run directory the file refers to "
                                       "(default: ./tunecluster-runs/<name>)."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="compose: publish the oracle on 127.0.0.1:PORT."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPUs per worker: compose a number or 'all'; "
                                       "kubernetes a number (nvidia.com/gpu per worker pod)."),
):
    """Print what `up` would create, writing nothing: Kubernetes objects as YAML (`kubectl apply
    -f -` works on it) or the compose file (`render --backend compose > compose.yml`)."""
    chosen = get_backend(backend.value)
    if rbac:
        typer.echo(chosen.render_rbac(namespace or "default", user, tuple(experiment), storage_reader), nl=False)
        return
    spec, _ = resolve_spec(str(file) if file else None, example)
    spec = Overrides(workers=workers, backend=chosen.name).apply(spec)
    typer.echo(chosen.render(spec, RenderOptions(namespace=namespace, include_secret=include_secret,
                                                 tensorboard=tensorboard, image=image, dir=dir, port=port,
                                                 gpus=gpus)), nl=False)
