"""The worker role: trains what the chief hands out, many trainings per process.

    loop.py              run_worker: set-up, the search loop, the end (export when asked)
    tuner.py             ClusterTuner: Keras Tuner's Tuner driven by the chief's work protocol
    function_tuner.py    FunctionTuner: trainings of a `run_trial` function (no Keras model)
    callbacks.py         the Keras callbacks of a training; the build function's check
    heartbeat.py         heartbeats (progress, lease renewal) and the IDLE back-off
    prediction_checks.py whether a classifier's predictions collapsed to one class
    interruptions.py     why a training stops early (SIGTERM, a lost lease, a usage error)
    chief_link.py        calls to the chief with retries while it is away
    export.py            the best model and its files
    strategy.py          devices and the tf.distribute strategy inside the worker
    tensorboard_log.py   per-trial TensorBoard logs (scalars and HParams)
"""


def run_worker(spec, role):
    """The worker role (see `loop.run_worker`)."""
    from tunecluster.cluster.worker.loop import run_worker as run

    return run(spec, role)
