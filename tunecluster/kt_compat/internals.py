"""Keras Tuner's private modules and functions that tunecluster calls, reached in one place.

Each function imports on first use (the chief must install the stand-in `keras` before anything
imports Keras Tuner). keras-tuner 1.4.x; `versions.py` refuses other releases.

- `protos()`: `keras_tuner.src.protos` (the gRPC service and messages of Keras Tuner's protocol);
- `oracle_servicer(oracle)`: `keras_tuner.src.distribute.oracle_chief.OracleServicer`;
- `load_oracle_client()`: imports `keras_tuner.src.distribute.oracle_client` (the worker side);
- `metrics_tracker_from_proto(proto)`: `keras_tuner.src.engine.metrics_tracking.MetricsTracker`;
- `best_value_and_epoch(history, objective)`:
  `keras_tuner.src.engine.tuner_utils._get_best_value_and_best_epoch_from_history`.
"""

from __future__ import annotations


def protos():
    from keras_tuner.src import protos as module

    return module


def oracle_servicer(oracle):
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    return OracleServicer(oracle)


def load_oracle_client() -> None:
    from keras_tuner.src.distribute import oracle_client  # noqa: F401


def metrics_tracker_from_proto(proto):
    from keras_tuner.src.engine import metrics_tracking

    return metrics_tracking.MetricsTracker.from_proto(proto)


def best_value_and_epoch(history, objective):
    """(the metrics at the best epoch, that epoch) of a Keras `History`, as Keras Tuner scores it."""
    from keras_tuner.src.engine import tuner_utils

    return tuner_utils._get_best_value_and_best_epoch_from_history(history, objective)
