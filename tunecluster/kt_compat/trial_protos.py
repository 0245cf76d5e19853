"""Trial protos for Keras Tuner's RPCs without rebuilding a trial's hyperparameters each time.

Keras Tuner's servicer converts a trial's hyperparameters (the whole space and the values: 32
hyperparameters for the Pima example) to a proto for every CreateTrial, UpdateTrial, GetTrial and
GetBestTrials answer (about 1 ms each here), and parses them back from every EndTrial request
(about 2 ms), though a trial's hyperparameters do not change once it is created. `TrialProtos`
keeps each running trial's hyperparameters proto, serialized, next to the object it was made from
(rebuilt if the trial's hyperparameters object or its values change), and an EndTrial that carries
the same hyperparameters back reuses the trial's own object instead of parsing them. The answers
are byte for byte those of `Trial.to_proto`; a reused object holds the same hyperparameters and
values as `Trial.from_proto` would, in the trial's declaration order (the proto groups them by
type), and keeps what the proto loses (an Int without a default comes back with its minimum).
"""

from __future__ import annotations

import threading


class TrialProtos:
    def __init__(self):
        self._cache: dict[str, tuple] = {}  # trial id -> (hps object, values key, serialized proto)
        self._lock = threading.Lock()

    @staticmethod
    def _values_key(hps) -> tuple:
        return (id(hps.values), len(hps.values), len(hps.space))

    def hyperparameters_bytes(self, trial) -> bytes:
        hps = trial.hyperparameters
        key = self._values_key(hps)
        with self._lock:
            entry = self._cache.get(trial.trial_id)
        if entry is not None and entry[0] is hps and entry[1] == key:
            return entry[2]
        data = hps.to_proto().SerializeToString(deterministic=True)
        with self._lock:
            self._cache[trial.trial_id] = (hps, key, data)
        return data

    def forget(self, trial_id: str) -> None:
        """Drop an ended trial's proto (a best trial asked for again is simply rebuilt)."""
        with self._lock:
            self._cache.pop(trial_id, None)

    def to_proto(self, trial):
        """`trial.to_proto()`, with the hyperparameters from the cache."""
        from keras_tuner.src import protos
        from keras_tuner.src.engine.trial import TrialStatus

        proto_module = protos.get_proto()
        score = (proto_module.Trial.Score(value=trial.score, step=trial.best_step)
                 if trial.score is not None else None)
        proto = proto_module.Trial(trial_id=trial.trial_id, score=score,
                                   status=TrialStatus.to_proto(trial.status), metrics=trial.metrics.to_proto())
        proto.hyperparameters.MergeFromString(self.hyperparameters_bytes(trial))
        return proto

    def from_proto(self, proto, current=None):
        """`Trial.from_proto(proto)`; when `current` (the oracle's trial of that id) has the same
        hyperparameters as the proto, the new trial shares its hyperparameters object."""
        from keras_tuner.src.engine import metrics_tracking
        from keras_tuner.src.engine import trial as trial_module
        from keras_tuner.src.engine.hyperparameters import HyperParameters

        hps = None
        if current is not None:
            sent = proto.hyperparameters.SerializeToString(deterministic=True)
            if sent == self.hyperparameters_bytes(current):
                hps = current.hyperparameters
        if hps is None:
            hps = HyperParameters.from_proto(proto.hyperparameters)
        instance = trial_module.Trial(hps, trial_id=proto.trial_id,
                                      status=trial_module.TrialStatus.from_proto(proto.status))
        if proto.HasField("score"):
            instance.score = proto.score.value
            instance.best_step = proto.score.step
        instance.metrics = metrics_tracking.MetricsTracker.from_proto(proto.metrics)
        return instance
