"""The training rows as one `tf.data` stream of batches whose order in epoch e depends only on
(a seed drawn after the model's build, e).

Keras shuffles array inputs itself, with a stateful random op that starts afresh at every `fit`
call: a training resumed at epoch e (`initial_epoch=e`) would see epoch 0's order again, not the
order an uninterrupted training sees at epoch e. Here each epoch's permutation is drawn from a
stateless generator seeded with (seed, epoch) - the seed drawn right after the model's build
(`seed_after_build`) - and the stream holds the epochs `first_epoch` to
`epochs - 1` back to back, passed to `fit` with `steps_per_epoch` (Keras then keeps one iterator
across the epochs). So epoch e's batches are the same whether the training ran from epoch 0,
resumed from a checkpoint, or continued a promoted trial. With the dropout streams restored
(`kt_compat.random_streams`) a training resumed at an epoch end trains exactly as the
uninterrupted one.

Like Keras' own array adapter, the rows stay one tensor and each batch gathers its rows by index;
the last batch of an epoch is the remainder. Data that is not NumPy arrays (`supported`) goes to
`fit` as before.
"""

from __future__ import annotations

import math

import numpy as np


def seed_after_build() -> int:
    """The stream's seed, drawn from TensorFlow's global random state as the model's build left
    it: the worker seeds that state with the training's seed before the build, so this is a
    function of that seed, unless the build reseeds (`keras.utils.set_random_seed(0)` in a build
    gives every trial the same order, as it did with Keras' own shuffling). A resumed training
    rebuilds its model the same way and draws the same seed."""
    import tensorflow as tf

    return int(tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64))


def supported(x, y) -> bool:
    """Whether (x, y) are NumPy arrays (or lists, tuples, dicts of them) of one row count: what
    this stream takes. Anything else (a `tf.data.Dataset`, a generator, a `PyDataset`) a loader
    returns goes to `fit` as it is, shuffled (or not) by Keras or the loader."""
    import tensorflow as tf

    leaves = tf.nest.flatten(x) + tf.nest.flatten(y)
    if not leaves or not all(isinstance(leaf, np.ndarray) and leaf.ndim >= 1 for leaf in leaves):
        return False
    return len({len(leaf) for leaf in leaves}) == 1


def batches(x, y, batch_size: int, seed: int, first_epoch: int, epochs: int):
    """(dataset, steps_per_epoch): epochs `first_epoch`..`epochs - 1` of (x, y) in batches, each
    epoch in the order seeded by (seed, epoch). (x, y) must be `supported`."""
    import tensorflow as tf

    rows = len(tf.nest.flatten(x)[0])
    steps = max(1, math.ceil(rows / batch_size))
    seed_value = tf.constant(int(seed) % (2**31 - 1), tf.int64)

    def epoch_order(epoch):
        noise = tf.random.stateless_uniform([rows], seed=tf.stack([seed_value, epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(noise)).batch(batch_size)

    indices = tf.data.Dataset.range(first_epoch, max(first_epoch, epochs)).flat_map(epoch_order)
    # the rows travel as one dataset element beside the indices (as in Keras' adapter), not as
    # tensors captured by the function: a pipeline that is serialized (sharding) stays small
    rows_element = tf.data.Dataset.from_tensors(tf.nest.map_structure(tf.convert_to_tensor, (x, y))).repeat()
    dataset = tf.data.Dataset.zip((indices, rows_element)).map(
        lambda index, tensors: tf.nest.map_structure(lambda t: tf.gather(t, index), tensors),
        num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE), steps


def fit_inputs(x, y, batch_size: int, seed: int, first_epoch: int, epochs: int) -> dict:
    """The training data and epoch arguments of `fit` for epochs `first_epoch`..`epochs - 1`: the
    stream when (x, y) are `supported`, otherwise x, y and the batch size as they are."""
    span = {"epochs": epochs, "initial_epoch": first_epoch}
    if not supported(x, y):
        return {"x": x, "y": y, "batch_size": batch_size, **span}
    rows, steps = batches(x, y, batch_size, seed, first_epoch, epochs)
    return {"x": rows, "steps_per_epoch": steps, "shuffle": False, **span}  # (the stream is shuffled already)
