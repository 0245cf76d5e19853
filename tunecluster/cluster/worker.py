"""The worker entrypoint (`tunecluster worker`): import TensorFlow once, run trials until the
chief says STOPPED, then export the best model if the chief asks this worker to.

Configured only through the environment (`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`,
`KERASTUNER_ORACLE_PORT`, `TUNECLUSTER_SPEC`, `TUNECLUSTER_RUN_DIR`, optional
`TUNECLUSTER_TF_THREADS` / `TUNECLUSTER_STRATEGY`).
"""

from __future__ import annotations

import inspect
import logging
import os
import time

from tunecluster.cluster.env import RoleEnv
from tunecluster.cluster.rundir import RunDir
from tunecluster.errors import UsageError
from tunecluster.tuning.spec import Experiment

log = logging.getLogger("tunecluster.worker")


def bind_hypermodel(func, splits):
    """Adapt `build(hp)` or `build(hp, data)` to Keras Tuner's `build(hp)`."""
    params = [p for p in inspect.signature(func).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) >= 2:
        return lambda hp: func(hp, splits)
    return func


def run_worker(spec: Experiment, role: RoleEnv) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tunecluster.tuning import strategy as strategy_mod

    strategy_mod.configure_devices(spec.cluster.tf_threads)

    import grpc
    from keras_tuner.src import protos

    from tunecluster.cluster.control import ControlClient
    from tunecluster.tuning.datasets import load_splits
    from tunecluster.tuning.export import export_best
    from tunecluster.tuning.loader import load_callable
    from tunecluster.tuning.oracles import build_oracle
    from tunecluster.tuning.worker_tuner import Backoff, ClusterTuner, Heartbeat, checked_build

    if not spec.hypermodel:
        raise UsageError("hypermodel: the spec names no hypermodel; set hypermodel: \"file.py:function\"")
    run = RunDir(role.run_dir or ".")
    splits = load_splits(spec.data)
    build = checked_build(bind_hypermodel(load_callable(spec.hypermodel), splits))
    strategy = strategy_mod.choose_strategy(spec.cluster.strategy)
    log.info("%s: %s, %d training rows", role.tuner_id, strategy_mod.describe(strategy), len(splits.y_train))

    channel = grpc.insecure_channel(role.address)
    control = ControlClient(channel)
    heartbeat = Heartbeat(lambda msg: control.call(msg.pop("method"), **msg), role.tuner_id)
    heartbeat.report(pid=os.getpid(), host=os.uname().nodename)
    heartbeat.start()

    tuner = ClusterTuner(
        build_oracle(spec.tuner), build,
        splits=splits, fit=spec.fit, directory=str(run.kt_dir), project_name=spec.name,
        distribution_strategy=strategy, executions_per_trial=spec.tuner.executions_per_trial,
        report=heartbeat.report, idle_backoff_max=spec.cluster.idle_backoff_max,
    )
    tuner._flush = heartbeat.flush
    # Keras Tuner's client made its own channel; share ours (one connection per worker).
    tuner.oracle.stub = protos.get_service_grpc().OracleStub(channel)
    tuner.send_space(lambda config: control.call("SetSpace", timeout=600, hyperparameters=config))
    started = time.time()
    tuner.search()
    log.info("%s: ran %d trials in %.1f s; search stopped", role.tuner_id, tuner.trials_run, time.time() - started)

    backoff = Backoff(first=0.1, maximum=1.0)
    try:
        while True:
            answer = control.call("Finish", tuner_id=role.tuner_id)
            if answer.get("state") == "wait":
                time.sleep(backoff.next())
                continue
            if answer.get("state") == "export":
                heartbeat.report(state="exporting")
                try:
                    metrics = export_best(tuner, splits, run, spec)
                except Exception as exc:
                    control.call("ExportDone", tuner_id=role.tuner_id, ok=False,
                                 message=f"{type(exc).__name__}: {exc}")
                    raise
                control.call("ExportDone", tuner_id=role.tuner_id, ok=True)
                log.info("exported trial %s to %s (validation %s)", metrics["trial_id"],
                         run.best_model, metrics["validation"])
            break
    finally:
        heartbeat.stop()
    return 0
