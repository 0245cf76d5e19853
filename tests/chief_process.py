"""Test helper: a real `tunecluster chief` process on a free port, and raw Keras Tuner protocol
calls to it (the same protos and metadata a worker sends), without any worker. The test process
imports the real Keras Tuner (and so TensorFlow) for the protos; the chief itself never does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tunecluster.core.network import free_port


class ChiefProcess:
    def __init__(self, tmp_path: Path, spec: dict, env: dict | None = None, token: str | None = "s3cret"):
        self.run = tmp_path / "run"
        self.run.mkdir(parents=True, exist_ok=True)
        self.spec_path = self.run / "spec.yaml"
        self.spec_path.write_text(yaml.safe_dump(spec))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token = token
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERASTUNER_TUNER_ID": "chief",
                    "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(self.port),
                    "TUNECLUSTER_SPEC": str(self.spec_path), "TUNECLUSTER_RUN_DIR": str(self.run),
                    **({"TUNECLUSTER_TOKEN": token} if token else {}), **(env or {})}
        self.log = self.run / "chief.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "ChiefProcess":
        self.process = subprocess.Popen([sys.executable, "-m", "tunecluster", "chief"], env=self.env,
                                        stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"chief did not listen: {self.log.read_text()}")
        while time.time() < deadline and "listening on" not in self.log_text():
            time.sleep(0.02)  # its log line follows the port's opening
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def results(self) -> dict:
        return json.loads((self.run / "results.json").read_text())

    def log_text(self) -> str:
        return self.log.read_text()


def space_config() -> dict:
    """A one-hyperparameter space as Keras Tuner's JSON config (what workers send with SetSpace)."""
    from keras_tuner.src.engine import hyperparameters as hp_module

    hps = hp_module.HyperParameters()
    hps.Choice("optimizer", ["adam", "sgd", "rmsprop"])
    return hps.get_config()


class RawWorker:
    """Keras Tuner's protocol spoken directly, as worker `tuner_id` (optionally with TLS)."""

    def __init__(self, address: str, tuner_id: str, token: str | None, tls_ca: bytes | None = None):
        from keras_tuner.src import protos

        from tunecluster.cluster.control import ControlClient
        from tunecluster.cluster.auth import Security, open_channel

        self.tuner_id = tuner_id
        self.protos = protos
        self.channel = open_channel(address, Security(token=token, tls_ca=tls_ca), tuner_id=tuner_id)
        self.stub = protos.get_service_grpc().OracleStub(self.channel)
        self.control = ControlClient(self.channel, timeout=10)

    def create_trial(self):
        return self.stub.CreateTrial(self.protos.get_service().CreateTrialRequest(tuner_id=self.tuner_id),
                                     timeout=10).trial

    def update_trial(self, trial_id: str, value: float):
        return self.stub.UpdateTrial(self.protos.get_service().UpdateTrialRequest(
            trial_id=trial_id, metrics={"val_accuracy": value}, step=0), timeout=10)

    def end_trial(self, trial_proto, status: str = "COMPLETED"):
        from keras_tuner.src.engine import trial as trial_module

        trial = trial_module.Trial.from_proto(trial_proto)
        trial.status = status
        return self.stub.EndTrial(self.protos.get_service().EndTrialRequest(trial=trial.to_proto()), timeout=10)
