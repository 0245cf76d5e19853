"""tf.distribute inside a worker (a real two-replica MirroredStrategy on two logical CPUs), and
the chief's TensorFlow-free oracle (the stand-in `keras` of kt_compat)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest



def _python(script: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def test_two_replica_mirrored_strategy_on_two_logical_cpus():
    out = _python("""
        import json
        from tunecluster.cluster.worker.strategy import configure_devices, choose_strategy
        configure_devices()
        from tunecluster.tuning.datasets import load_splits
        from tunecluster.tuning.examples import example_spec
        from tunecluster.tuning.examples.pima import build_optimizer
        import keras, keras_tuner, numpy as np
        spec = example_spec("pima-optimizer")
        strategy = choose_strategy(spec.cluster.strategy)
        splits = load_splits(spec.data)
        with strategy.scope():
            model = build_optimizer(keras_tuner.HyperParameters(), splits)
        history = model.fit(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
                            epochs=1, batch_size=32, verbose=0)
        print(json.dumps({"kind": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
                          "devices": list(strategy.extended.worker_devices),
                          "same": model.distribute_strategy is strategy,
                          "loss": float(history.history["loss"][0])}))
    """, env={"TUNECLUSTER_LOGICAL_CPUS": "2", "TUNECLUSTER_STRATEGY": "mirrored"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["kind"] == "MirroredStrategy" and result["replicas"] == 2
    assert len(result["devices"]) == 2 and all("CPU" in d for d in result["devices"])
    assert result["same"] is True and result["loss"] == result["loss"] and result["loss"] > 0


def test_auto_strategy_on_one_device_is_the_default():
    out = _python("""
        from tunecluster.cluster.worker.strategy import choose_strategy
        print(choose_strategy("auto"))
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "None"


@pytest.mark.parametrize("kind", ["random", "grid", "bayesian", "hyperband"])
def test_chief_runs_every_oracle_without_tensorflow(kind, tmp_path):
    out = _python(f"""
        import sys
        from tunecluster.kt_compat import keras_stub
        assert keras_stub.install()
        import keras_tuner as kt
        from tunecluster.tuning.oracles import build_oracle
        from tunecluster.tuning.spec import TunerSpec
        oracle = build_oracle(TunerSpec(kind="{kind}", max_trials=4, bayesian={{"num_initial_points": 2}},
                                        hyperband={{"max_epochs": 4, "factor": 2}}))
        oracle._set_project_dir({str(tmp_path)!r}, "p")
        hp = kt.HyperParameters(); hp.Choice("optimizer", ["adam", "sgd"]); hp.Int("units", 8, 64, step=8)
        oracle.update_space(hp)
        seen = []
        for i in range(3):
            trial = oracle.create_trial("tuner0")
            assert trial.status == "RUNNING", trial.status
            oracle.update_trial(trial.trial_id, {{"val_accuracy": 0.5 + i / 10}}, step=1)
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            seen.append(trial.hyperparameters.values["optimizer"])
        reloaded = build_oracle(TunerSpec(kind="{kind}", max_trials=4))
        reloaded._set_project_dir({str(tmp_path)!r}, "p")
        reloaded.reload()
        assert len(reloaded.trials) == 3
        assert "tensorflow" not in sys.modules, "the chief imported TensorFlow"
        print("OK", seen)
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1].startswith("OK")


