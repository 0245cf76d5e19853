"""The worker entrypoint (`tunecluster worker`): import TensorFlow once, run trials until the
chief says STOPPED, then export the best model if the chief asks this worker to.

Configured only through the environment (`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`,
`KERASTUNER_ORACLE_PORT`, `TUNECLUSTER_SPEC`, `TUNECLUSTER_RUN_DIR`, the token and TLS variables of
`cluster/auth.py`, optional `TUNECLUSTER_TF_THREADS` / `TUNECLUSTER_STRATEGY`).

Every call to the chief goes through a `ChiefLink` (retries while the chief restarts, gives up
after `cluster.chief_timeout`). SIGTERM stops training at the next batch, gives the running trial
back to the chief and exits with 143. A shared run folder that became unreachable mid-training
(`storage_loss`) gives the trial back too and exits with 74, so the pod or process is restarted.
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import os
import signal
import sys
import time

from tunecluster import kt_compat
from tunecluster.cluster.worker import strategy
from tunecluster.cluster.worker.storage_loss import EXIT_STORAGE_LOST, SharedStorageLost
from tunecluster.cluster.worker.interruptions import FatalUsage, TrialInterrupted
from tunecluster.core.env import RoleEnv
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir
from tunecluster.tuning.spec import Experiment
from tunecluster.tuning.spec_stopping import stops_early

log = logging.getLogger("tunecluster.worker")


def bind_hypermodel(func, splits, args=None):
    """Adapt `build(hp)` or `build(hp, data)` to Keras Tuner's `build(hp)`; `args` (the spec's
    hypermodel_args) are passed as keyword arguments."""
    args = dict(args or {})
    params = [p for p in inspect.signature(func).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in args]
    if len(params) >= 2:
        return lambda hp: func(hp, splits, **args)
    return functools.partial(func, **args) if args else func


def _load_run_trial(spec: Experiment):
    """The run_trial function, imported before Keras Tuner: when its module brings no Keras or
    TensorFlow, the worker runs Keras Tuner on the chief's stand-in for Keras (no TensorFlow
    import: a fraction of a second and ~100 MiB instead of seconds and ~500 MiB), sealed so that
    a later use of Keras fails with a message instead of doing nothing."""
    from tunecluster.kt_compat import internals, keras_stub
    from tunecluster.tuning.loader import load_callable

    func = load_callable(spec.run_trial, "run_trial")
    if "keras" not in sys.modules and "tensorflow" not in sys.modules:
        kt_compat.install("model_free_worker")
        # everything that touches Keras at import time, before the seal (Keras Tuner's
        # modules, the tuner's callback classes)
        import keras_tuner  # noqa: F401

        from tunecluster.cluster.worker import function_tuner  # noqa: F401

        internals.load_oracle_client()
        keras_stub.seal("run_trial's module imported no Keras or TensorFlow, so this worker runs "
                        "without them; import keras (or tensorflow) at the top of that module")
    else:
        kt_compat.install("worker")
        strategy.configure_devices(spec.cluster.tf_threads)
    return func


def run_worker(spec: Experiment, role: RoleEnv) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if spec.run_trial:
        run_trial = _load_run_trial(spec)
    else:
        kt_compat.install("worker")
        strategy.configure_devices(spec.cluster.tf_threads)

    from tunecluster.cluster.auth import open_channel, read_security
    from tunecluster.cluster.control import ControlClient
    from tunecluster.cluster.worker.chief_link import ChiefLink, ResilientStub
    from tunecluster.cluster.worker.heartbeat import Backoff, Heartbeat
    from tunecluster.kt_compat import internals
    from tunecluster.tuning.datasets import load_splits
    from tunecluster.tuning.loader import load_callable
    from tunecluster.tuning.oracles import build_oracle

    if not spec.hypermodel and not spec.run_trial:
        raise UsageError("hypermodel: the spec names no hypermodel; set hypermodel: \"file.py:function\" "
                         "(or run_trial: \"file.py:function\")")
    security = read_security()
    run = RunDir(role.run_dir or ".")
    splits = load_splits(spec.data)
    if spec.run_trial:
        from tunecluster.cluster.worker.function_tuner import FunctionTuner, export_run_trial_best

        make_tuner = functools.partial(FunctionTuner, run_trial=run_trial)

        def export(tuner, splits, run, spec, choice):
            return export_run_trial_best(tuner, run, spec, choice)
        log.info("%s: run_trial %s (%s), %d training rows", role.tuner_id, spec.run_trial,
                 "with Keras" if "tensorflow" in sys.modules else "no TensorFlow", len(splits.y_train))
    else:
        from tunecluster.cluster.worker.callbacks import checked_build
        from tunecluster.cluster.worker.export import export_best as export
        from tunecluster.cluster.worker.tuner import ClusterTuner

        from tunecluster.tuning.spec_hypermodel_args import check_accepts

        function = load_callable(spec.hypermodel)
        try:
            check_accepts(function, spec.hypermodel_args, spec.hypermodel)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        build = checked_build(bind_hypermodel(function, splits, spec.hypermodel_args))
        distribution = strategy.choose_strategy(spec.cluster.strategy)
        make_tuner = functools.partial(ClusterTuner, hypermodel=build, distribution_strategy=distribution)
        log.info("%s: %s, %d training rows; %s", role.tuner_id, strategy.describe(distribution),
                 len(splits.y_train), strategy.describe_gpus())

    channel = open_channel(role.address, security, tuner_id=role.tuner_id)
    link = ChiefLink(role.address, spec.cluster.chief_timeout)
    control = ControlClient(channel, link=link)
    # the heartbeats' own link logs no outages: the worker's calls report them, and a beat's
    # warning must not come after the worker's last line (its error) when it gives up
    beats = ControlClient(channel, link=ChiefLink(role.address, spec.cluster.chief_timeout, quiet=True))
    heartbeat = Heartbeat(lambda msg: beats.call(msg.pop("method"), **msg), role.tuner_id,
                          interval=spec.cluster.heartbeat_interval)
    heartbeat.report(pid=os.getpid(), host=os.uname().nodename)

    tuner = make_tuner(
        build_oracle(spec.tuner),
        splits=splits, fit=spec.fit, directory=str(run.kt_dir), project_name=spec.name,
        executions_per_trial=spec.tuner.executions_per_trial, report=heartbeat.report, idle_backoff_max=spec.cluster.idle_backoff_max,
        control=control.call, score_mode=spec.tuner.score, confirm_dir=str(run.confirm),
        record_epoch=heartbeat.record_epoch, curves_needed=stops_early(spec.tuner),
        top_rung=spec.tuner.asha.max_epochs if spec.tuner.kind == "asha" else None,
    )
    heartbeat.on_answer = tuner.lease_answer
    # Keras Tuner's client made its own channel; use ours (token, retries, one connection).
    tuner.oracle.stub = ResilientStub(internals.protos().get_service_grpc().OracleStub(channel), link)

    def on_sigterm(*_):
        log.warning("%s: SIGTERM: stopping at the next batch and giving the trial back", role.tuner_id)
        tuner.request_stop()

    signal.signal(signal.SIGTERM, on_sigterm)
    # Keras Tuner clears the Keras session and runs gc.collect() before every build (Keras'
    # clear_session runs another). With TensorFlow loaded, each full collection walks millions
    # of import-time objects: 0.4-1 s per trial. Frozen, they are skipped; what trials create is
    # still collected (tests/integration/test_worker_memory.py).
    gc.collect()
    gc.freeze()
    heartbeat.start()
    try:
        return _search_and_finish(spec, role, run, splits, tuner, control, heartbeat, export, Backoff)
    except TrialInterrupted as stop:
        _give_back(control, role.tuner_id, stop.trial_id)
        return 143
    except SharedStorageLost as lost:
        log.error("%s: the shared run folder is unreachable (%s); giving the trial back and exiting "
                  "so that this worker is restarted", role.tuner_id, lost.reason)
        _give_back(control, role.tuner_id, lost.key, reason="shared folder unreachable")
        return EXIT_STORAGE_LOST
    except FatalUsage as fatal:
        # the unit goes back at once, not after its lease: the next worker meets the same error
        # within seconds, and with no worker left the launcher reports it
        _give_back(control, role.tuner_id, fatal.key, reason="usage error")
        raise fatal.error from None
    finally:
        heartbeat.stop()


def describe_unit(key: str) -> str:
    """'3#1' -> 'trial 3 (execution 1)', 'confirm:3#0' -> 'trial 3 (confirmation run 0)'."""
    kind, _, rest = key.rpartition(":")
    trial, sep, index = rest.rpartition("#")
    if not sep:
        return f"trial {key}"
    return f"trial {trial} ({'confirmation run' if kind == 'confirm' else 'execution'} {index})"


def _give_back(control, tuner_id: str, key, reason: str = "SIGTERM") -> None:
    if key:
        try:
            control.call("Release", tuner_id=tuner_id, trial_id=key, reason=reason, timeout=5)
            log.warning("%s: gave %s back to the chief", tuner_id, describe_unit(key))
        except Exception as exc:  # the lease expires on its own
            log.warning("%s: could not give %s back (%s); its lease will expire", tuner_id, describe_unit(key), exc)
    log.warning("%s: stopped by %s", tuner_id, reason)


def _search_and_finish(spec, role, run, splits, tuner, control, heartbeat, export_best, Backoff) -> int:
    tuner.send_space(lambda config: control.call("SetSpace", timeout=600, hyperparameters=config))
    started = time.time()
    backoff = Backoff(first=0.1, maximum=1.0)
    while True:
        tuner.search()
        if tuner.stop_requested.is_set():
            raise TrialInterrupted(None)
        log.info("%s: ran %d trials in %.1f s (%d taken back); search stopped", role.tuner_id,
                 tuner.trials_run, time.time() - started, tuner.trials_lost)
        while True:
            answer = control.call("Finish", tuner_id=role.tuner_id)
            choice = answer.get("choice")
            state = answer.get("state")
            if state == "wait":
                if tuner.stop_requested.wait(backoff.next()):
                    raise TrialInterrupted(None)
                continue
            break
        if state == "resume":  # a trial was taken back from a lost worker: run it
            log.info("%s: a trial went back to the queue; resuming the search", role.tuner_id)
            continue
        if state == "export":
            heartbeat.report(state="exporting")
            try:
                metrics = export_best(tuner, splits, run, spec, choice)
            except Exception as exc:
                control.call("ExportDone", tuner_id=role.tuner_id, ok=False,
                             message=f"{type(exc).__name__}: {exc}")
                raise
            control.call("ExportDone", tuner_id=role.tuner_id, ok=True)
            log.info("exported trial %s to %s (validation %s)", metrics["trial_id"],
                     run.best_model if spec.hypermodel else run.best, metrics["validation"])
        return 0
