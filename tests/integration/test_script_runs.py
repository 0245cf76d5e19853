"""`tunecluster up --script`: unmodified Keras Tuner scripts (a RandomSearch, a Hyperband, a custom
`run_trial` Tuner subclass, the Pima tutorial's four phases: `tests/keras_tuner_scripts.py`) on 2
local workers, with a worker SIGKILLed mid-trial and the chief
SIGKILLed once: every trial completes once, `get_best_hyperparameters()` / `get_best_models()`
after `search()` answer in every role, `best/model.keras` loads with plain Keras and scores what
`best/metrics.json` says, and `status`/`results`/`pull` read the run. The chief of a --script run
refuses a call without the run's token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import grpc
import pytest

from waiting import read_json, wait_until
from keras_tuner_scripts import ALL, COMMON, SCRIPTS, TAIL, TUTORIAL, validation_rows
from tunecluster.tuning.examples import csv_path

def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tunecluster", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


TRIALS = {"random_search.py": 4, "custom_run_trial.py": 4, "hyperband.py": None}  # None: Hyperband's own count
BUDGET = ("3", "2")  # the tutorial's phases here: 3 trials x 2 epochs (their arguments)


@pytest.mark.chaos  # kills a worker and the chief: the chaos step (`pytest -m chaos`), about 8 minutes
@pytest.mark.parametrize("name", sorted(ALL))
def test_an_unmodified_script_survives_a_killed_worker_and_a_killed_chief(tmp_path, name):
    script = tmp_path / name
    script.write_text(ALL[name])
    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    arguments = [str(csv_path()), *(BUDGET if name in TUTORIAL else ())]
    up = subprocess.Popen([sys.executable, "-m", "tunecluster", "up", "--script", str(script), "--workers", "2",
                           "--dir", str(run), "--", *arguments],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        def worker_mid_trial():
            progress = read_json(run / "progress.json") or {}
            for tuner_id, worker in (progress.get("workers") or {}).items():
                if worker.get("state") == "running" and worker.get("trial") is not None and worker.get("pid"):
                    return tuner_id, worker["pid"], worker["trial"]
            return None

        tuner_id, pid, trial = wait_until("a worker running a trial", worker_mid_trial, 240, up)
        os.kill(pid, signal.SIGKILL)

        def one_completed():
            progress = read_json(run / "progress.json") or {}
            return (progress.get("counts") or {}).get("completed", 0) >= 1

        wait_until("a completed trial", one_completed, 240, up)
        chief_pid = read_json(run / "cluster.json")["roles"][0]["pid"]
        os.kill(chief_pid, signal.SIGKILL)
        output, _ = up.communicate(timeout=600)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.communicate(timeout=60)
    assert up.returncode == 0, output[-4000:]
    assert "restarting it with the same id" in output, output[-3000:]

    # every trial completed, each once; the killed worker's trial among them
    results = read_json(run / "results.json")
    ids = [t["trial_id"] for t in results["trials"]]
    assert len(ids) == len(set(ids))
    assert {t["status"] for t in results["trials"]} == {"COMPLETED"}, results["trials"]
    assert trial in ids
    expected = int(BUDGET[0]) if name in TUTORIAL else TRIALS[name]
    if expected is not None:
        assert len(ids) == expected
    spec_text = (run / "spec.yaml").read_text()
    assert ("kind: hyperband" if name == "hyperband.py" else "kind: random") in spec_text
    # the script's directory and project_name were mapped onto the run folder; overwrite=True ignored
    assert (run / "kt" / name.removesuffix(".py").replace("_", "-") / "oracle.json").is_file()
    assert not any((tmp_path / folder).exists() for folder in ("my_dir", "hb", "my_directory", "untitled_project"))

    # get_best_hyperparameters()/get_best_models() after search() answered in every role
    metrics = read_json(run / "best" / "metrics.json")
    for role in ("chief", "worker-0", "worker-1"):
        lines = [l for l in (run / "logs" / f"{role}.log").read_text().splitlines() if l.startswith("BEST ")]
        assert lines, f"{role} printed no BEST line"
        best = json.loads(lines[-1][5:])
        assert best["values"] == metrics["all_hyperparameters"], (role, best)
        assert best["accuracy"] == pytest.approx(metrics["validation"]["accuracy"], abs=1e-6)

    # best/model.keras loads with plain Keras and scores what best/metrics.json says
    loaded = subprocess.run([sys.executable, "-c", validation_rows(name, str(csv_path())) + textwrap.dedent(f"""
        import json, keras
        model = keras.models.load_model({str(run / 'best' / 'model.keras')!r})
        print(json.dumps(model.evaluate(x_val, y_val, verbose=0, return_dict=True)))
    """)], capture_output=True, text=True, env=env, timeout=180)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    scored = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert scored["accuracy"] == pytest.approx(metrics["validation"]["accuracy"], abs=1e-6)
    assert metrics["objective"]["score"] == pytest.approx(max(t["score"] for t in results["trials"]))
    assert set(read_json(run / "best" / "hyperparameters.json")) == {k for k in metrics["all_hyperparameters"]
                                                                 if not k.startswith("tuner/")}

    # status, results and pull read the run
    status = _cli("status", "--dir", str(run), cwd=tmp_path)
    assert status.returncode == 0 and "finished" in status.stdout, status.stdout + status.stderr
    table = _cli("results", "--dir", str(run), cwd=tmp_path)
    assert table.returncode == 0 and "COMPLETED" in table.stdout
    pulled = _cli("pull", "--dir", str(run), "--to", str(tmp_path / "pulled"), cwd=tmp_path)
    assert pulled.returncode == 0 and (tmp_path / "pulled" / "model.keras").is_file(), pulled.stderr


def test_the_chief_of_a_script_run_refuses_a_call_without_the_token(tmp_path):
    """A worker-less --script run (its chief waits for workers that never come): the oracle port
    answers UNAUTHENTICATED to Keras Tuner's own client without the token."""
    script = tmp_path / "random_search.py"
    script.write_text(SCRIPTS["random_search.py"])
    run = tmp_path / "run"
    up = subprocess.Popen([sys.executable, "-m", "tunecluster", "up", "--script", str(script), "--workers", "1",
                           "--dir", str(run), "--detach", "--", str(csv_path())],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        output, _ = up.communicate(timeout=240)
        assert up.returncode == 0, output
        address = read_json(run / "cluster.json")["chief_address"]
        from tunecluster.kt_compat.internals import protos as kt_protos

        protos = kt_protos()
        stub = protos.get_service_grpc().OracleStub(grpc.insecure_channel(address))
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetSpace(protos.get_service().GetSpaceRequest(), timeout=30, wait_for_ready=True)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        _cli("down", "--dir", str(run), cwd=tmp_path)


def test_a_failing_trials_error_reaches_the_chief_and_the_search_stops_with_its_reason(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(COMMON + textwrap.dedent("""
        class Broken(keras_tuner.RandomSearch):
            def run_trial(self, trial, *args, **kwargs):
                raise ValueError(f"this trial cannot train (units={trial.hyperparameters.get('units')})")

        tuner = Broken(build, objective="val_accuracy", max_trials=5, seed=7, max_consecutive_failed_trials=2)
        EPOCHS = 1
    """) + TAIL)
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "tunecluster", "up", "--script", str(script), "--workers", "1",
                           "--dir", str(run), "--", str(csv_path())], capture_output=True, text=True,
                          timeout=400, cwd=tmp_path, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    trials = read_json(run / "results.json")["trials"]
    assert [t["status"] for t in trials] == ["FAILED", "FAILED"]
    for trial in trials:
        assert trial["error_type"] == "ValueError"
        assert trial["message"].startswith("this trial cannot train (units=")
    progress = read_json(run / "progress.json")
    assert progress["search_failed"] == "Number of consecutive failures exceeded the limit of 2."
    assert "the search ended early" in (run / "logs" / "chief.log").read_text()
    assert "Number of consecutive failures exceeded the limit of 2" in done.stdout + done.stderr


def test_ctrl_c_gives_trials_back_and_up_resume_finishes_the_search(tmp_path):
    """Ctrl-C on `up`: SIGTERM to every role; workers give their trials back (exit 143), the chief
    saves the search; `up --resume` runs the same unmodified script (its overwrite=True ignored)
    and completes every trial once."""
    script = tmp_path / "random_search.py"
    script.write_text(SCRIPTS["random_search.py"])
    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "tunecluster", "up", "--script", str(script), "--workers", "2",
               "--dir", str(run)]
    up = subprocess.Popen([*command, "--", str(csv_path())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env, cwd=tmp_path)
    try:
        def one_completed_and_one_running():
            counts = (read_json(run / "progress.json") or {}).get("counts") or {}
            return counts.get("completed", 0) >= 1 and counts.get("running", 0) >= 1

        wait_until("a completed and a running trial", one_completed_and_one_running, 240, up)
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert "--resume" in output, output[-2000:]
    codes = {r["name"]: r["exit_code"] for r in read_json(run / "cluster.json")["roles"]}
    # 143: stopped by SIGTERM; -9: `up` stops what is left after 5 s (a batch can take that long here)
    assert codes["chief"] == 143 and {codes["worker-0"], codes["worker-1"]} <= {143, -9}, codes
    for worker in ("worker-0", "worker-1"):
        log = (run / "logs" / f"{worker}.log").read_text()
        assert "SIGTERM: stopping at the next batch" in log, log[-2000:]
        # it gave its trial back, or (the chief stopping at the same moment) left it to the lease, or
        # `up` killed it before it could say (its lease expires the same way)
        said = log.count("back to the chief") + log.count("its lease will expire")
        assert said == 1 or (said == 0 and codes[worker] == -9), (worker, codes[worker], log[-2000:])
    assert not read_json(run / "progress.json")["finished"]
    done_before = {t["trial_id"] for t in read_json(run / "results.json")["trials"] if t["status"] == "COMPLETED"}

    resumed = subprocess.run([*command, "--resume", "--", str(csv_path())], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    trials = read_json(run / "results.json")["trials"]
    assert sorted(t["trial_id"] for t in trials) == sorted({t["trial_id"] for t in trials})
    assert [t["status"] for t in trials] == ["COMPLETED"] * 4
    assert done_before <= {t["trial_id"] for t in trials}
    assert "overwrite=True ignored" in (run / "logs" / "chief.log").read_text()
    assert (run / "best" / "model.keras").is_file()
