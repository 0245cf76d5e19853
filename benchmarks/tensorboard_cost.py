"""What TensorBoard logging (`fit.tensorboard`) costs a trial: the pima-optimizer model trained
in one process again and again, alternating with and without the trial's TensorBoard callback
(`tunecluster.cluster.worker.tensorboard_log`), the way a worker trains a trial (fresh model each time,
Keras session cleared before the build). Alternating pairs cancel most of the drift of a busy
machine; the first pair (imports, tracing) is reported apart. Each fit is timed by wall clock and
by this process's CPU time (less disturbed by other work on the machine). Then the callback alone
(no training): opening the writers and writing the hyperparameters, one epoch's scalars, closing.

    python benchmarks/tensorboard_cost.py --pairs 8 --epochs 2 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()

    import keras
    import keras_tuner as kt

    from tunecluster.tuning.datasets import load_splits
    from tunecluster.tuning.examples import example_spec
    from tunecluster.tuning.examples.pima import build_optimizer
    from tunecluster.cluster.worker.tensorboard_log import TrialTensorBoard

    splits = load_splits(example_spec("pima-optimizer").data)
    logroot = tempfile.mkdtemp(prefix="tb-cost-")

    def one_trial(index: int, with_tb: bool) -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        keras.backend.clear_session()
        hp = kt.HyperParameters()
        model = build_optimizer(hp, splits)
        callbacks = [TrialTensorBoard(f"{logroot}/{index}", str(index), dict(hp.values))] if with_tb else []
        model.fit(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
                  epochs=args.epochs, batch_size=32, verbose=0, callbacks=callbacks)
        return time.perf_counter() - started, time.process_time() - cpu

    def callback_only(index: int) -> tuple[float, float, float]:
        logs = {"loss": 0.5, "accuracy": 0.7, "val_loss": 0.6, "val_accuracy": 0.68}
        callback = TrialTensorBoard(f"{logroot}/cb{index}", f"cb{index}", {"optimizer": "adam", "units": 32})
        t0 = time.perf_counter()
        callback.on_train_begin()
        t1 = time.perf_counter()
        for epoch in range(10):
            callback.on_epoch_end(epoch, logs)
        t2 = time.perf_counter()
        callback.on_train_end()
        return t1 - t0, (t2 - t1) / 10, time.perf_counter() - t2

    first = {"with": one_trial(0, True)[0], "without": one_trial(1, False)[0]}
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for pair in range(args.pairs):
        order = (True, False) if pair % 2 else (False, True)
        for flag in order:
            runs[flag].append(one_trial(2 + 2 * pair + flag, flag))
    med = statistics.median
    result = {"epochs": args.epochs, "pairs": args.pairs, "first_trial_wall_s": first}
    for k, clock in enumerate(("wall", "cpu")):
        with_tb, without = [r[k] for r in runs[True]], [r[k] for r in runs[False]]
        cost = med(w - o for w, o in zip(with_tb, without))
        result[clock] = {"median_with_s": round(med(with_tb), 4), "median_without_s": round(med(without), 4),
                         "median_paired_cost_s": round(cost, 4),
                         "median_paired_cost_pct": round(100 * cost / med(without), 1),
                         "with_s": [round(x, 3) for x in with_tb], "without_s": [round(x, 3) for x in without]}
    callback_only(0)  # the first opens TensorFlow's summary machinery
    parts = [callback_only(i) for i in range(1, 11)]
    result["callback_only_ms"] = {
        "begin": round(1000 * med(p[0] for p in parts), 2),
        "per_epoch": round(1000 * med(p[1] for p in parts), 2),
        "end": round(1000 * med(p[2] for p in parts), 2),
    }
    result["callback_only_ms"]["trial_of_%d_epochs" % args.epochs] = round(
        result["callback_only_ms"]["begin"] + result["callback_only_ms"]["end"]
        + args.epochs * result["callback_only_ms"]["per_epoch"], 2)
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
