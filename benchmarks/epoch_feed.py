"""What the worker's training feed costs: Keras' own shuffling of array inputs against
`epoch_data.batches` (the worker's stream, whose epoch e's order depends only on the seed and e,
so that a resumed training trains exactly as an uninterrupted one), side by side in one process.

Two tasks, each a real training of a fixed model, the two feeds alternating `--repeats` times:

  pima       the example dataset's 614 training rows, the tutorial's 12-8-1 network, batch 32
             (20 steps an epoch: the fixed cost of a `fit` call dominates, as in ASHA's trainings)
  generated  `generated_task.py`'s 48,000 training rows, three layers of 256, batch 32
             (1,500 steps an epoch: the per-step cost dominates)

Per feed and task: the first epoch's seconds (tracing, the pipeline's start), the later epochs'
mean seconds, and the whole `fit`; and the ratio stream / Keras of each (medians over the repeats).

    python benchmarks/epoch_feed.py --out benchmarks/results/epoch_feed.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import machine, save, table  # noqa: E402

import generated_task  # noqa: E402

FEEDS = ("keras", "stream")


def pima_task():
    import pandas as pd

    from tunecluster.tuning import examples

    frame = pd.read_csv(Path(examples.__file__).parent / "diabetes.csv")
    x = frame.iloc[:, :8].to_numpy("float32")
    y = frame.iloc[:, 8].to_numpy("float32")
    return x[:614], y[:614], x[614:], y[614:], (12, 8), 10


def generated_task_rows(folder: Path):
    import pandas as pd

    frame = pd.read_csv(generated_task.write_csv(folder / "generated.csv"))
    x = frame.drop(columns=[generated_task.TARGET]).to_numpy("float32")
    y = frame[generated_task.TARGET].to_numpy("float32")
    return x[:48_000], y[:48_000], x[48_000:60_000], y[48_000:60_000], (256, 256, 256), 3


def one_fit(feed: str, task, seed: int = 7) -> dict:
    import keras

    from tunecluster.cluster.worker import epoch_data

    x, y, x_val, y_val, units, epochs = task
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((x.shape[1],))] + [keras.layers.Dense(u, activation="relu") for u in units]
    model = keras.Sequential(layers + [keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    if feed == "stream":  # the `fit` arguments the worker passes
        data = epoch_data.fit_inputs(x, y, 32, seed, 0, epochs)
    else:
        data = {"x": x, "y": y, "batch_size": 32, "epochs": epochs}
    started = time.perf_counter()
    model.fit(**data, validation_data=(x_val, y_val), validation_batch_size=32, verbose=0, callbacks=[clock])
    fit_s = time.perf_counter() - started
    later = [b - a for a, b in zip(ends, ends[1:])]
    keras.backend.clear_session()
    return {"first_epoch_s": ends[0] - started, "later_epoch_s": statistics.mean(later), "fit_s": fit_s}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", default="pima,generated")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    figures = {"machine": machine(), "command": " ".join(["benchmarks/epoch_feed.py", *(argv or sys.argv[1:])]),
               "repeats": args.repeats, "tasks": {}}
    with tempfile.TemporaryDirectory() as folder:
        loaders = {"pima": pima_task, "generated": lambda: generated_task_rows(Path(folder))}
        for name in args.tasks.split(","):
            task = loaders[name]()
            one_fit("keras", task)  # warm-up: TensorFlow's first graph in this process
            runs = {feed: [] for feed in FEEDS}
            for _ in range(args.repeats):
                for feed in FEEDS:
                    runs[feed].append(one_fit(feed, task))
            medians = {feed: {k: statistics.median(r[k] for r in runs[feed]) for k in runs[feed][0]} for feed in FEEDS}
            ratios = {k: medians["stream"][k] / medians["keras"][k] for k in medians["keras"]}
            figures["tasks"][name] = {"rows": len(task[0]), "epochs": task[5], "runs": runs, "median": medians,
                                      "stream_over_keras": ratios}
            table(["task", "feed", "first epoch s", "later epoch s", "fit s"],
                  [[name, feed, medians[feed]["first_epoch_s"], medians[feed]["later_epoch_s"],
                    medians[feed]["fit_s"]] for feed in FEEDS]
                  + [[name, "stream/keras", ratios["first_epoch_s"], ratios["later_epoch_s"], ratios["fit_s"]]])
    save(figures, args.out, "epoch_feed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
