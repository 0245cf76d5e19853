"""Bad input everywhere gets one line on stderr that says what is wrong and what to do, exit code
2 (usage) or 1 (runtime), no traceback, and leaves an earlier run untouched — even with --force,
because everything that can be checked is checked before anything is written."""

from __future__ import annotations

import hashlib
import json
import socket
import textwrap
from pathlib import Path

import pytest
import yaml

from tunecluster.tuning.examples import csv_path

GOOD_MODEL = textwrap.dedent("""
    import keras

    def build(hp):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 8, step=4)),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
        return model
""")


def _spec(tmp_path: Path, **changes) -> Path:
    spec = {"name": "bad-input", "hypermodel": "model.py:build",
            "data": {"csv": str(csv_path()), "target": "Outcome"},
            "tuner": {"max_trials": 2}, "fit": {"epochs": 1}, "confirm": {"enabled": False},
            "cluster": {"workers": 1}}
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            spec[section][field] = value
        else:
            spec[section] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _earlier_run(tmp_path: Path) -> Path:
    """A finished run of another experiment, as `up` leaves it (the parts `up` looks at)."""
    run = tmp_path / "earlier"
    (run / "best").mkdir(parents=True)
    (run / "spec.yaml").write_text(yaml.safe_dump({"name": "earlier"}))
    (run / "progress.json").write_text(json.dumps({"finished": True}))
    (run / "results.json").write_text(json.dumps({"experiment": "earlier", "trials": []}))
    (run / "best" / "model.keras").write_bytes(b"weights")
    return run


def _fingerprint(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(result, code: int, *fragments: str, role: bool = False) -> None:
    """`role`: a chief/worker process logs to stderr as it goes; its error is the last line."""
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert result.returncode == code, (result.returncode, result.stdout[-1500:], result.stderr[-1500:])
    if role:
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _write(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)


CASES = {
    "spec file missing": (lambda t: None, ["-f", "missing.yaml"], "spec file missing.yaml not found"),
    "spec garbled": (lambda t: _write(t, "spec.yaml", "name: [unclosed\n"), ["-f", "spec.yaml"], "spec.yaml"),
    "spec wrong key": (lambda t: _write(t, "spec.yaml", "tuner: {max_trial: 3}\n"), ["-f", "spec.yaml"], "max_trial"),
    "lease shorter than heartbeats": (
        lambda t: _spec(t, cluster={"heartbeat_interval": 5, "lease_timeout": 6}), ["-f", "spec.yaml"], "lease_timeout"),
    "hypermodel file missing": (lambda t: _spec(t, hypermodel="nope.py:build"), ["-f", "spec.yaml"], "nope.py not found"),
    "hypermodel function missing": (
        lambda t: (_spec(t), _write(t, "model.py", "def other(hp):\n    pass\n")), ["-f", "spec.yaml"],
        "defines no function 'build'"),
    "hypermodel syntax error": (
        lambda t: (_spec(t), _write(t, "model.py", "def build(hp:\n")), ["-f", "spec.yaml"], "syntax error"),
    "hypermodel module unknown": (lambda t: _spec(t, hypermodel="no_such_pkg.models:build"), ["-f", "spec.yaml"],
                                  "cannot find module 'no_such_pkg.models'"),
    "csv missing": (lambda t: (_spec(t, data={"csv": "absent.csv"}), _write(t, "model.py", GOOD_MODEL)),
                    ["-f", "spec.yaml"], "absent.csv not found"),
    "csv empty": (lambda t: (_spec(t, data={"csv": "empty.csv"}), _write(t, "model.py", GOOD_MODEL),
                             _write(t, "empty.csv", "")), ["-f", "spec.yaml"], "is empty"),
    "csv without target": (lambda t: (_spec(t, data={"csv": "d.csv", "target": "Outcome"}), _write(t, "model.py", GOOD_MODEL),
                                      _write(t, "d.csv", "a,b\n1,2\n3,4\n")), ["-f", "spec.yaml"],
                           "column 'Outcome' is not in d.csv; its columns are a, b"),
    "csv non-numeric": (lambda t: (_spec(t, data={"csv": "d.csv", "target": "y"}), _write(t, "model.py", GOOD_MODEL),
                                   _write(t, "d.csv", "a,y\n1,0\nfoo,1\n")), ["-f", "spec.yaml"],
                        "column 'a' of d.csv is not numeric (row 3: 'foo')"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_the_earlier_run_survives_force(case, tmp_path, cli):
    prepare, args, fragment = CASES[case]
    prepare(tmp_path)
    earlier = _earlier_run(tmp_path)
    before = _fingerprint(earlier)
    result = cli("up", *args, "--dir", str(earlier), "--force", cwd=tmp_path, timeout=120)
    _one_line_error(result, 2, fragment)
    assert _fingerprint(earlier) == before


def test_run_dir_of_another_experiment(tmp_path, cli):
    _spec(tmp_path)
    _write(tmp_path, "model.py", GOOD_MODEL)
    earlier = _earlier_run(tmp_path)
    before = _fingerprint(earlier)
    resumed = cli("up", "-f", "spec.yaml", "--dir", str(earlier), "--resume", cwd=tmp_path, timeout=120)
    _one_line_error(resumed, 2, "holds experiment 'earlier', not 'bad-input'")
    plain = cli("up", "-f", "spec.yaml", "--dir", str(earlier), cwd=tmp_path, timeout=120)
    _one_line_error(plain, 2, "already holds a finished run of 'earlier'", "--force")
    stranger = tmp_path / "not-a-run"
    stranger.mkdir()
    _write(stranger, "notes.txt", "mine")
    foreign = cli("up", "-f", "spec.yaml", "--dir", str(stranger), "--force", cwd=tmp_path, timeout=120)
    _one_line_error(foreign, 2, "is not a tunecluster run")
    assert _fingerprint(earlier) == before and (stranger / "notes.txt").read_text() == "mine"


def test_port_in_use(tmp_path, cli):
    _spec(tmp_path)
    _write(tmp_path, "model.py", GOOD_MODEL)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("up", "-f", "spec.yaml", "--port", str(port), "--dir", "run", cwd=tmp_path, timeout=120)
    _one_line_error(result, 2, f"port {port}", "in use")


@pytest.mark.parametrize("model, fragment", [
    ("import no_such_module_anywhere\n" + GOOD_MODEL, "raised ModuleNotFoundError"),
    (GOOD_MODEL.replace("return model", "return None"), "returned NoneType, not a keras.Model"),
], ids=["import-fails", "returns-no-model"])
def test_hypermodel_failing_in_the_workers(tmp_path, cli, model, fragment):
    _spec(tmp_path)
    _write(tmp_path, "model.py", model)
    result = cli("up", "-f", "spec.yaml", "--dir", "run", cwd=tmp_path, timeout=300)
    _one_line_error(result, 2, fragment)


def _worker_env(chief_spec: Path, port: int, **extra) -> dict:
    return {"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(port), "TUNECLUSTER_SPEC": str(chief_spec), **extra}


def test_unreachable_chief(tmp_path, cli):
    from tunecluster.core.network import free_port

    spec = _spec(tmp_path, cluster={"chief_timeout": 3})
    _write(tmp_path, "model.py", GOOD_MODEL)
    port = free_port()
    result = cli("worker", cwd=tmp_path, timeout=120,
                 env=_worker_env(spec, port, TUNECLUSTER_TOKEN="t", TUNECLUSTER_RUN_DIR=str(tmp_path)))
    _one_line_error(result, 1, f"the chief at 127.0.0.1:{port} has not answered for 3 s", role=True)


def test_wrong_token(tmp_path, cli):
    from chief_process import ChiefProcess

    chief = ChiefProcess(tmp_path / "chief", {"name": "bad-input"}, token="the-real-one").start()
    try:
        spec = _spec(tmp_path)
        _write(tmp_path, "model.py", GOOD_MODEL)
        result = cli("worker", cwd=tmp_path, timeout=120,
                     env=_worker_env(spec, chief.port, TUNECLUSTER_TOKEN="a-guess", TUNECLUSTER_RUN_DIR=str(chief.run)))
        _one_line_error(result, 2, "refused this worker", "TUNECLUSTER_TOKEN", role=True)
        assert "wrong token" in chief.log_text()
    finally:
        chief.stop()
