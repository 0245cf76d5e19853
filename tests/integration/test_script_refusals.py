"""Keras Tuner scripts that cannot run as tunecluster roles end with one line (exit 2) saying why
and what to change; a script's arguments reach its sys.argv; `up --script` refuses the same way
before any worker trains. Real Keras Tuner scripts, run by the launcher in this process (no search
is served: each is refused before or without one)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunecluster.core.errors import UsageError
from tunecluster.core.network import free_port
from tunecluster.script.tuner_spec import script_experiment
from tunecluster.tuning.spec import dump_spec

HEAD = textwrap.dedent("""
    import sys
    import keras, keras_tuner

    def build(hp):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Int("units", 2, 4)),
                                  keras.layers.Dense(1)])
        model.compile(loss="mse")
        return model
""")

SCRIPTS = {
    "no_search.py": HEAD + 'tuner = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=2)\n'
                           'print("built, never searched")\n',
    "two_tuners.py": HEAD + 'a = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=2)\n'
                            'b = keras_tuner.Hyperband(build, objective="val_loss", max_epochs=2)\n',
    "exits.py": HEAD + 'sys.exit(3)\n',
    "reads_argv.py": HEAD + 'epochs = int(sys.argv[1])\n',
    "catches_everything.py": HEAD + textwrap.dedent("""
        try:
            a = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=2)
            b = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=2)
        except Exception:
            print("swallowed")
    """),
}

EXPECTED = {
    "no_search.py": "no_search.py never called search() on a Keras Tuner tuner",
    "two_tuners.py": "two_tuners.py builds a second tuner (Hyperband); tunecluster runs one search per script",
    "exits.py": "exits.py exited with code 3 before its search at exits.py:",
    "reads_argv.py": ("reads_argv.py raised IndexError: list index out of range before its search at "
                      "reads_argv.py:10 (epochs = int(sys.argv[1])); it reads sys.argv: pass its arguments after `--`"),
    "catches_everything.py": "catches_everything.py builds a second tuner (RandomSearch)",
}


@pytest.fixture
def role_env(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "s.py").write_text("")
    (run / "spec.yaml").write_text(dump_spec(script_experiment(tmp_path / "s.py", workers=1)))
    env = {"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(free_port()), "TUNECLUSTER_SPEC": str(run / "spec.yaml"),
           "TUNECLUSTER_RUN_DIR": str(run), "TUNECLUSTER_TOKEN": "t"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    from tunecluster.kt_compat import script_hooks

    script_hooks.uninstall()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_that_cannot_run_this_way_gets_one_line(tmp_path, role_env, name):
    from tunecluster.script import run_script

    script = tmp_path / name
    script.write_text(SCRIPTS[name])
    cwd = os.getcwd()
    with pytest.raises(UsageError) as raised:
        run_script(str(script), [])
    assert str(raised.value).startswith(EXPECTED[name]), str(raised.value)
    assert "\n" not in str(raised.value)
    assert os.getcwd() == cwd  # the launcher ran the script in its folder and came back


def test_arguments_after_the_script_are_its_sys_argv(tmp_path, role_env):
    from tunecluster.script import run_script

    script = tmp_path / "argv.py"
    script.write_text('import sys, pathlib\npathlib.Path("argv.txt").write_text(repr(sys.argv[1:]))\n'
                      'import keras_tuner\n')
    with pytest.raises(UsageError, match="never called search"):
        run_script(str(script), ["--epochs", "3", "data.csv"])
    assert (tmp_path / "argv.txt").read_text() == "['--epochs', '3', 'data.csv']"


def test_up_script_refuses_a_script_without_search_with_one_line_and_exit_2(tmp_path):
    script = tmp_path / "no_search.py"
    script.write_text(SCRIPTS["no_search.py"])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "tunecluster", "up", "--script", str(script), "--workers", "1",
                           "--dir", str(tmp_path / "run")], capture_output=True, text=True, env=env,
                          timeout=240, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "never called search()" in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_up_script_refuses_flags_the_script_decides(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPTS["no_search.py"])
    done = subprocess.run([sys.executable, "-m", "tunecluster", "up", "--script", str(script), "--max-trials", "3"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "--max-trials does not go with --script" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "tunecluster", "up", "--script", str(Path(tmp_path) / "nope.py")],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr
