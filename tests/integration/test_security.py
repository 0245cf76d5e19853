"""The oracle port's protection, against a real chief process: calls without the token or with a
wrong one are refused with UNAUTHENTICATED, logged, and change nothing; the right token works;
TLS works end to end; a chief without any token configuration refuses to start."""

from __future__ import annotations

import grpc
import pytest

from chief_process import ChiefProcess, RawWorker, space_config

SPEC = {"name": "guarded", "tuner": {"max_trials": 3}, "cluster": {"workers": 1}}


@pytest.fixture
def chief(tmp_path):
    process = ChiefProcess(tmp_path, SPEC, token="right-token").start()
    yield process
    process.stop()


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_calls_without_the_right_token_are_refused_and_change_nothing(chief, token):
    intruder = RawWorker(chief.address, "tuner0", token=token)
    for call in (lambda: intruder.control.call("SetSpace", hyperparameters=space_config()),
                 intruder.create_trial,
                 lambda: intruder.control.call("Status")):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # nothing changed: no space, no trial
    owner = RawWorker(chief.address, "tuner0", token="right-token")
    status = owner.control.call("Status")
    assert status["counts"]["total"] == 0 and status["workers"] == {}
    from keras_tuner.src.engine.hyperparameters import HyperParameters

    space = owner.stub.GetSpace(owner.protos.get_service().GetSpaceRequest(), timeout=10).hyperparameters
    assert HyperParameters.from_proto(space).space == []
    log = chief.log_text()
    assert "UNAUTHENTICATED" in log and ("no token" if token is None else "wrong token") in log
    assert "right-token" not in log and "wrong-token" not in log  # tokens never reach the log


def test_the_right_token_drives_the_search(chief):
    worker = RawWorker(chief.address, "tuner0", token="right-token")
    assert worker.control.call("SetSpace", hyperparameters=space_config())["size"] == 1
    trial = worker.create_trial()
    assert trial.trial_id == "0"
    worker.update_trial(trial.trial_id, 0.7)
    worker.end_trial(trial)
    assert worker.control.call("Status")["counts"]["completed"] == 1


def test_a_worker_cannot_speak_for_another_tuner_id(chief):
    worker = RawWorker(chief.address, "tuner0", token="right-token")
    worker.control.call("SetSpace", hyperparameters=space_config())
    with pytest.raises(grpc.RpcError) as refused:
        worker.stub.CreateTrial(worker.protos.get_service().CreateTrialRequest(tuner_id="tuner1"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_chief_without_a_token_refuses_to_start(tmp_path, cli):
    process = ChiefProcess(tmp_path, SPEC, token=None)
    result = cli("chief", cwd=tmp_path, env={k: v for k, v in process.env.items()
                                              if not k.startswith("TUNECLUSTER_TOKEN")})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no oracle token") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_tls_chief_serves_only_tls_clients(tmp_path):
    from tunecluster.cluster.run_secrets import RunSecrets

    secrets = RunSecrets(tmp_path)
    cert, key = secrets.ensure_tls()
    chief = ChiefProcess(tmp_path, SPEC, token="t", env={"TUNECLUSTER_TLS_CERT": str(cert),
                                                         "TUNECLUSTER_TLS_KEY": str(key)}).start()
    try:
        assert "TLS" in chief.log_text()
        secure = RawWorker(chief.address, "tuner0", token="t", tls_ca=cert.read_bytes())
        assert secure.control.call("SetSpace", hyperparameters=space_config())["size"] == 1
        plain = RawWorker(chief.address, "tuner0", token="t")
        with pytest.raises(grpc.RpcError) as refused:
            plain.stub.CreateTrial(plain.protos.get_service().CreateTrialRequest(tuner_id="tuner0"), timeout=3)
        assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        chief.stop()


def test_up_with_tls_runs_a_search_end_to_end(tmp_path, cli):
    result = cli("up", "--example", "pima-optimizer", "--no-confirm", "--workers", "1", "--max-trials", "2",
                 "--epochs", "1", "--tls", "--dir", "run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "TLS" in result.stdout
    run = tmp_path / "run"
    assert (run / "secrets" / "tls.crt").is_file()
    assert oct((run / "secrets" / "tls.key").stat().st_mode & 0o777) == "0o600"
    assert oct((run / "secrets" / "token").stat().st_mode & 0o777) == "0o600"
    assert "(TLS, token required)" in (run / "logs" / "chief.log").read_text()
    token = (run / "secrets" / "token").read_text().strip()
    for path in list((run / "logs").iterdir()) + [run / "results.json", run / "progress.json", run / "cluster.json"]:
        assert token not in path.read_text(), path
