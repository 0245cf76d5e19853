"""`tunecluster report` and TensorBoard on a real finished run: a 2-worker local search of
pima-comprehensive (numeric, categorical and per-layer hyperparameters, 4 trials, 1 epoch), then
the HTML report (every figure, every hyperparameter, nothing loaded from the network), its PNGs
(size, not blank), the TensorBoard event files of every trial (scalars and HParams data), and
`tunecluster tensorboard` answering HTTP on its port."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tensorboard_events import events

FIGURES = ("best-so-far", "parallel-coordinates", "timeline", "hyperparameter-scores")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import run_cli

    work = tmp_path_factory.mktemp("report")
    result = run_cli("up", "--example", "pima-comprehensive", "--workers", "2", "--max-trials", "4", "--confirm-top", "2", "--confirm-repeats", "2",
                     "--epochs", "1", "--dir", "run", cwd=work, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    return work, work / "run"


@pytest.fixture(scope="module")
def report(finished_run):
    from conftest import run_cli

    work, run = finished_run
    started = time.perf_counter()
    result = run_cli("report", "--dir", str(run), "--out", "out/report.html", "--png", cwd=work, timeout=180)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"report built in {elapsed:.1f} s (CLI, end to end)")
    return work / "out", result


def _hp_names(run: Path) -> list[str]:
    document = json.loads((run / "results.json").read_text())
    names = {n for t in document["trials"] for n in t["hyperparameters"] if not n.startswith("tuner/")}
    return sorted(names)


def test_html_has_every_figure_and_names_every_hyperparameter(finished_run, report):
    _, run = finished_run
    out, result = report
    html = (out / "report.html").read_text()
    assert "report.html" in result.stdout
    names = _hp_names(run)
    assert {"num_layers", "optimizer", "units_0", "activation_0", "dropout_0"} <= set(names)
    for key in FIGURES:
        section = re.search(rf'<section id="{key}">(.*?)</section>', html, re.S)
        assert section, f"figure {key} missing"
        assert "Plotly.newPlot" in section.group(1), f"figure {key} has no plot"
    plots = {key: re.search(rf'<section id="{key}">(.*?)</section>', html, re.S).group(1) for key in FIGURES}
    # the confirmation stage: the 2 retrained configurations with their confirmed mean, and any warnings
    document = json.loads((run / "results.json").read_text())
    confirmation = re.search(r'<section id="confirmation">(.*?)</section>', html, re.S).group(1)
    assert "retrained 2 times" in confirmation and "confirmed mean" in confirmation
    assert all(f"<td>{t}</td>" in confirmation for t in document["confirmation"]["ranking"])
    for warning in document["warnings"]:
        assert warning.split(":")[0] in html
    for name in names:  # the parallel view has an axis, the per-hyperparameter figure a panel, per name
        assert f'"label":"{name}' in plots["parallel-coordinates"], name
        assert f'"text":"{name}"' in plots["hyperparameter-scores"], name
    # the timeline has a bar for every trial, on the worker that ran it
    document = json.loads((run / "results.json").read_text())
    for trial in document["trials"]:
        assert f'"{trial["worker"]}"' in plots["timeline"]
    # utilisation, the best trial and the sortable results table with one row per trial
    assert '<section id="utilisation">' in html and "busy (s)" in html
    best = re.search(r'<section id="best-trial">(.*?)</section>', html, re.S).group(1)
    assert f"trial <b>{document['best_trial']}</b>" in best and "val_accuracy" in best
    table = re.search(r'<table class="sortable" id="results">(.*?)</table>', html, re.S).group(1)
    assert table.count("<tr") == 1 + len(document["trials"])
    assert all(f"<th>{name}</th>" in table for name in names)
    assert "addEventListener('click'" in html
    summary = json.loads(re.search(r'id="report-summary">(.*?)</script>', html, re.S).group(1))
    assert summary["figures"] == list(FIGURES) and sorted(summary["hyperparameters"]) == names


def test_pngs_exist_sized_and_not_blank(report):
    from PIL import Image

    out, result = report
    for key in FIGURES:
        path = out / f"report-{key}.png"
        assert path.is_file() and str(path.name) in result.stdout
        assert path.stat().st_size > 10_000, path
        with Image.open(path) as image:
            assert image.width >= 600 and image.height >= 250, (path, image.size)
            rgb = image.convert("RGB")
            colours = rgb.getcolors(maxcolors=1_000_000)
            assert colours is not None and len(colours) > 50, (path, len(colours or []))
            # not one colour with specks: the most common (background) covers less than 97% of pixels
            assert max(count for count, _ in colours) < 0.97 * image.width * image.height, path


def test_html_is_self_contained(report):
    out, _ = report
    html = (out / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=", html, re.I), "a script is loaded from elsewhere"
    assert not re.search(r"<link[^>]+href=[\"']?https?:", html, re.I)
    assert "plotly.js" in html.lower() and len(html) > 1_000_000  # Plotly's JavaScript is inlined
    assert html.count("plotly.js v") <= 2  # ... once


def test_every_trial_logged_scalars_and_hparams_for_tensorboard(finished_run):
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    _, run = finished_run
    document = json.loads((run / "results.json").read_text())
    for trial in document["trials"]:
        session = run / "tensorboard" / trial["trial_id"]
        assert session.is_dir(), session
        starts = [v for e in events(session) for v in e.summary.value
                  if v.tag == hparams_metadata.SESSION_START_INFO_TAG]
        assert len(starts) == 1 and starts[0].metadata.plugin_data.plugin_name == "hparams"
        info = hparams_metadata.parse_session_start_info_plugin_data(starts[0].metadata.plugin_data.content)
        assert info.group_name == trial["trial_id"]
        logged = {name: (value.string_value or value.number_value) for name, value in info.hparams.items()}
        assert set(logged) == set(trial["hyperparameters"])
        for name, value in trial["hyperparameters"].items():
            assert logged[name] == (pytest.approx(value) if isinstance(value, (int, float)) else value), name
        for group in ("train", "validation"):
            scalars = [(e.step, v.tag) for e in events(session / group) for v in e.summary.value
                       if v.metadata.plugin_data.plugin_name == "scalars"]
            assert {(0, "epoch_loss"), (0, "epoch_accuracy")} <= set(scalars), (trial["trial_id"], group)
            assert {step for step, _ in scalars} == {0}  # one epoch


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tensorboard_command_serves_the_hparams_of_the_run(finished_run):
    work, run = finished_run
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunecluster", "tensorboard", "--dir", str(run), "--port", str(port)],
                            cwd=work, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # printed once TensorBoard answers
        assert f"http://localhost:{port}/" in line, line + (proc.stdout.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            assert answer.status == 200
        request = urllib.request.Request(f"http://127.0.0.1:{port}/data/plugin/hparams/experiment",
                                         data=b'{"experimentName": ""}', headers={"content-type": "application/json"})
        experiment = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert {"num_layers", "optimizer"} <= {h["name"] for h in experiment["hparamInfos"]}
        assert ("validation", "epoch_accuracy") in {(m["name"]["group"], m["name"]["tag"])
                                                    for m in experiment["metricInfos"]}
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the CLI stops TensorBoard (SIGTERM, SIGKILL after 5 s)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    with pytest.raises(OSError):  # TensorBoard went with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_report_of_a_folder_that_is_not_a_run_is_one_line(tmp_path, cli):
    result = cli("report", "--dir", str(tmp_path), cwd=tmp_path, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "not a tunecluster run directory" in lines[0]


