"""Device set-up and the `tf.distribute` strategy inside one worker.

`auto` picks MirroredStrategy when the worker sees several GPUs and the default strategy on one
device; `mirrored`, `one_device` and `default` force a choice (spec `cluster.strategy` or the
`TUNECLUSTER_STRATEGY` variable). `TUNECLUSTER_LOGICAL_CPUS=N` splits the CPU into N logical
devices so a real multi-replica MirroredStrategy can run without GPUs (tests). Workers that share
a GPU (`cluster.workers_per_gpu`) get memory growth, or a hard per-process limit with
`TUNECLUSTER_GPU_MEMORY_MB`.
"""

from __future__ import annotations

import os
from typing import Optional

from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError

STRATEGIES = ("auto", "default", "mirrored", "one_device")


def configure_devices(tf_threads: Optional[int] = None) -> None:
    """Size TensorFlow's thread pools and split logical CPUs; call before any TF op runs."""
    import tensorflow as tf

    threads = os.environ.get(role_env.TF_THREADS) or tf_threads
    if threads:
        n = int(threads)
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    _configure_gpus()
    logical = int(os.environ.get(role_env.LOGICAL_CPUS, "0") or 0)
    if logical > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(logical)]
        )


def gpu_memory_settings(environ=os.environ) -> tuple[bool, Optional[int]]:
    """(memory growth, memory limit in MiB) asked for by the role's environment."""
    limit = environ.get(role_env.GPU_MEMORY_MB)
    growth = environ.get(role_env.GPU_MEMORY_GROWTH, "") in ("1", "true", "yes")
    return growth, (int(limit) if limit else None)


def _configure_gpus() -> list:
    """Several workers on one GPU (`cluster.workers_per_gpu`): a hard memory limit per process if
    TUNECLUSTER_GPU_MEMORY_MB is set, else memory growth (TensorFlow otherwise takes almost the
    whole GPU in the first worker). Returns the GPUs configured (none on a CPU machine)."""
    import tensorflow as tf

    growth, limit = gpu_memory_settings()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        if limit:
            tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
        elif growth:
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


def choose_strategy(name: str = "auto"):
    """Return a tf.distribute strategy for this worker's devices, or None for the default one."""
    import tensorflow as tf

    name = os.environ.get(role_env.STRATEGY) or name
    if name not in STRATEGIES:
        raise UsageError(f"{role_env.STRATEGY}/cluster.strategy={name!r}; choose one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return None
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy((gpus or cpus)[0].name)
    devices = [d.name for d in (gpus if gpus else cpus)]
    if gpus:
        return tf.distribute.MirroredStrategy(devices)
    # several logical CPUs: reduce over plain copies (NCCL is for GPUs)
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=devices[0])
    )


def describe(strategy) -> str:
    if strategy is None:
        return "default (one device)"
    return f"{type(strategy).__name__} over {strategy.num_replicas_in_sync} replica(s)"


def describe_gpus(environ=os.environ) -> str:
    """One line on the GPUs this worker was given and how their memory is shared."""
    growth, limit = gpu_memory_settings(environ)
    visible = environ.get(role_env.CUDA_DEVICES)
    memory = f"memory limit {limit} MiB" if limit else ("memory growth" if growth else "default GPU memory")
    return f"{role_env.CUDA_DEVICES}={visible if visible is not None else '(all)'}, {memory}"
