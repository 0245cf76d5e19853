"""The logic of `upload` and `pull` on Kubernetes without a cluster: the helper pod's side
(pod_side.py, run in-process on real files: receive with resume and checksum, stat, the streamed
tar, the CSV header check), the client's resume decisions, file lists, room checks, the check of
the streamed tar, the exec status channel, and the helper pod object. The same code runs against
the real test bed in tests/e2e/test_kubernetes_transfer.py."""

from __future__ import annotations

import hashlib
import io
import json
import os

import kubernetes_validate
import pytest

from tunecluster.backends.kubernetes import pod_side
from tunecluster.backends.kubernetes.exec_stream import exit_code
from tunecluster.backends.kubernetes.helper_pod import MEMORY_LIMIT, helper_pod, pod_command
from tunecluster.backends.kubernetes.transfer import StreamedTar, unpack_pulled
from tunecluster.backends.kubernetes.upload import (Item, Step, check_room, decide, items_of, needed_bytes,
                                                    sha256_of, target_dir)
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.preflight import preflight
from tunecluster.tuning.spec import validate_spec


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


DATA = bytes(range(256)) * 5000  # 1.28 MB: more than one 1 MiB chunk


# --- the pod's side ---------------------------------------------------------------------------
def test_receive_writes_a_part_file_and_renames_it_once_the_checksum_matches(tmp_path):
    answer = pod_side.receive(str(tmp_path), "d/train.csv", len(DATA), 0, _sha(DATA), io.BytesIO(DATA))
    assert answer == {"name": "d/train.csv", "size": len(DATA), "sha256": _sha(DATA)}
    assert (tmp_path / "d" / "train.csv").read_bytes() == DATA
    assert not (tmp_path / "d" / "train.csv.part").exists()


def test_receive_continues_a_partial_file_and_counts_its_prefix_in_the_checksum(tmp_path):
    kept = 700_000
    (tmp_path / "f.bin.part").write_bytes(DATA[:kept] + b"garbage past the offset")
    pod_side.receive(str(tmp_path), "f.bin", len(DATA), kept, _sha(DATA), io.BytesIO(DATA[kept:]))
    assert (tmp_path / "f.bin").read_bytes() == DATA


def test_receive_refuses_a_wrong_checksum_and_keeps_nothing(tmp_path):
    with pytest.raises(SystemExit, match="differs"):
        pod_side.receive(str(tmp_path), "f.bin", len(DATA), 0, _sha(b"other"), io.BytesIO(DATA))
    assert list(tmp_path.iterdir()) == []


def test_a_cut_stream_leaves_the_part_file_to_resume_from(tmp_path):
    with pytest.raises(SystemExit, match="ended 1000 bytes early"):
        pod_side.receive(str(tmp_path), "f.bin", len(DATA), 0, _sha(DATA), io.BytesIO(DATA[:-1000]))
    assert (tmp_path / "f.bin.part").read_bytes() == DATA[:-1000]
    assert not (tmp_path / "f.bin").exists()


def test_stat_reports_sizes_hashes_only_where_they_can_match_and_free_space(tmp_path):
    (tmp_path / "same.csv").write_bytes(DATA)
    (tmp_path / "other.csv").write_bytes(b"short")
    (tmp_path / "half.csv.part").write_bytes(DATA[:1000])
    answer = pod_side.stat(str(tmp_path / "missing" / "dir"), [("x", 1)])  # a folder not made yet
    assert answer["files"]["x"] == {"size": -1, "part": -1, "sha256": None, "part_sha256": None}
    answer = pod_side.stat(str(tmp_path), [("same.csv", len(DATA)), ("other.csv", len(DATA)), ("half.csv", len(DATA))])
    files = answer["files"]
    assert files["same.csv"]["sha256"] == _sha(DATA)
    assert files["other.csv"] == {"size": 5, "part": -1, "sha256": None, "part_sha256": None}
    assert files["half.csv"]["part"] == 1000 and files["half.csv"]["part_sha256"] == _sha(DATA[:1000])
    assert answer["free"] > 0


def test_the_streamed_tar_arrives_checked_in_odd_sized_pieces(tmp_path):
    root = tmp_path / "volume"
    (root / "best").mkdir(parents=True)
    (root / "best" / "weights.bin").write_bytes(DATA)
    (root / "best" / "metrics.json").write_text("{}")
    (root / "results.json").write_text("[]")
    out, err = io.BytesIO(), io.StringIO()
    pod_side.send(str(root), ["best", "results.json", "not-there.csv"], out, err)
    reports = [json.loads(line) for line in err.getvalue().splitlines()]
    assert reports[0] == {"total": len(DATA) + 4} and reports[1]["bytes"] == len(out.getvalue())

    class Bar:
        def __init__(self):
            self.started, self.count = [], 0

        def start(self, label, total):
            self.started.append(total)

        def advance(self, n):
            self.count += n

        def finish(self):
            pass

    bar, received = Bar(), io.BytesIO()
    tar = StreamedTar(received, bar, "pull")
    stderr = err.getvalue().encode()
    tar.on_stderr(stderr[:7])  # reports split anywhere
    tar.on_stderr(stderr[7:20])
    data = out.getvalue()
    for start in range(0, len(data), 99_991):
        tar.on_stdout(data[start:start + 99_991])
    tar.on_stderr(stderr[20:])
    tar.verify("pod")
    assert bar.started == [len(DATA) + 4] and bar.count == len(data)
    received.seek(0)
    files = unpack_pulled(received, tmp_path / "out", "exp")
    assert files == ["best/metrics.json", "best/weights.bin", "results.json"]
    assert (tmp_path / "out" / "best" / "weights.bin").read_bytes() == DATA


def test_a_damaged_or_cut_tar_is_refused(tmp_path):
    out, err = io.BytesIO(), io.StringIO()
    (tmp_path / "a").write_bytes(DATA)
    pod_side.send(str(tmp_path), ["a"], out, err)
    data = bytearray(out.getvalue())
    data[5000] ^= 1
    tar = StreamedTar(io.BytesIO(), pod_side_progress(), "pull")
    tar.on_stderr(err.getvalue().encode())
    tar.on_stdout(bytes(data))
    with pytest.raises(RunFailure, match="damaged"):
        tar.verify("pod")
    cut = StreamedTar(io.BytesIO(), pod_side_progress(), "pull")
    cut.on_stdout(out.getvalue()[:1000])
    with pytest.raises(RunFailure, match="no checksum"):
        cut.verify("pod")


def pod_side_progress():
    from tunecluster.backends.transfer_progress import NoProgress

    return NoProgress()


def test_the_csv_check_names_what_is_wrong(tmp_path):
    good = tmp_path / "train.csv"
    good.write_text('"a",b,Outcome\n1,2,0\n')
    assert pod_side.check(str(good), "Outcome")["columns"] == 3
    with pytest.raises(SystemExit, match="column 'Label' is not in the header"):
        pod_side.check(str(good), "Label")
    with pytest.raises(SystemExit, match="does not exist in the pods"):
        pod_side.check(str(tmp_path / "nope.csv"), "Outcome")
    with pytest.raises(SystemExit, match="is not a file"):
        pod_side.check(str(tmp_path), "Outcome")


def test_the_pod_side_runs_as_a_python3_command():
    command = pod_command("stat", "/shared/data", "x", "1")
    assert command[:2] == ["python3", "-c"] and command[3:] == ["stat", "/shared/data", "x", "1"]
    compile(command[2], "pod_side", "exec")  # the whole module travels as the -c program


# --- the client's decisions -------------------------------------------------------------------
def test_decide_skips_resumes_or_sends_and_hashes_only_when_sizes_allow():
    item = Item(None, "f", len(DATA))
    asked = []

    def local(limit):
        asked.append(limit)
        return _sha(DATA if limit is None else DATA[:limit])

    assert decide(item, {"size": len(DATA), "sha256": _sha(DATA), "part": -1}, local) == Step("skip")
    assert decide(item, {"size": -1, "part": 1000, "part_sha256": _sha(DATA[:1000])}, local) == Step("resume", 1000)
    assert decide(item, {"size": -1, "part": 1000, "part_sha256": _sha(b"x")}, local) == Step("send")
    asked.clear()
    assert decide(item, {"size": 3, "sha256": None, "part": len(DATA) + 1, "part_sha256": "x"}, local) == Step("send")
    assert asked == []  # no size could match: nothing hashed
    items = [item, Item(None, "g", 10), Item(None, "h", 20)]
    assert needed_bytes(items, [Step("skip"), Step("resume", 4), Step("send")]) == 6 + 20


def test_files_and_folders_become_names_on_the_volume(tmp_path):
    (tmp_path / "images" / "cats").mkdir(parents=True)
    (tmp_path / "images" / "cats" / "1.png").write_bytes(b"x")
    (tmp_path / "images" / "2.png").write_bytes(b"yy")
    (tmp_path / "train.csv").write_text("a\n")
    items = items_of([tmp_path / "train.csv", tmp_path / "images"])
    assert [(i.name, i.size) for i in items] == [("train.csv", 2), ("images/2.png", 2), ("images/cats/1.png", 1)]
    with pytest.raises(UsageError, match="two files would land at 'train.csv'"):
        items_of([tmp_path / "train.csv", tmp_path / "train.csv"])
    with pytest.raises(UsageError, match="no such file"):
        items_of([tmp_path / "nope.csv"])
    (tmp_path / "x.part").write_text("")
    with pytest.raises(UsageError, match=".part are kept"):
        items_of([tmp_path / "x.part"])


def test_target_folders_stay_on_the_volume():
    assert target_dir("data") == "/shared/data"
    assert target_dir("/shared/a/../b") == "/shared/b"
    assert target_dir(".") == "/shared"
    for bad in ("../etc", "/etc", "/sharedx"):
        with pytest.raises(UsageError, match="mounted at /shared"):
            target_dir(bad)


def test_too_little_room_is_one_line():
    check_room(10, None, "the volume claim c holds", "advice")
    check_room(10, 10, "the volume claim c holds", "advice")
    with pytest.raises(UsageError) as caught:
        check_room(3 * 1024**3, 1024**3, "the volume claim exp-shared holds", "upload less")
    assert str(caught.value) == "the files to upload need 3.0 GiB but the volume claim exp-shared holds 1.0 GiB; upload less"


def test_local_checksums_of_whole_files_and_prefixes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(DATA)
    seen = []
    assert sha256_of(path, on_bytes=seen.append) == _sha(DATA) and sum(seen) == len(DATA)
    assert sha256_of(path, 1_500_000) == _sha(DATA[:1_500_000])


def test_exit_codes_from_the_status_channel():
    assert exit_code(b"") == 0
    assert exit_code(b'{"metadata":{},"status":"Success"}') == 0
    failure = {"status": "Failure", "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert exit_code(json.dumps(failure).encode()) == 3
    assert exit_code(b'{"status":"Failure","message":"container not found"}') == 1


# --- the helper pod and the spec --------------------------------------------------------------
def _spec(**kubernetes):
    raw = example_spec("pima-units").model_dump(mode="json")
    raw["cluster"]["kubernetes"].update(kubernetes)
    raw["cluster"]["backend"] = "kubernetes"
    return validate_spec(raw, "test")


@pytest.mark.parametrize("version", ["1.29.0", "1.33.0"])
def test_the_helper_pod_is_small_locked_down_and_valid(version):
    pod = helper_pod(_spec(), "tuning", writable=True, node="node-1")
    kubernetes_validate.validate(pod, version, strict=True)
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == MEMORY_LIMIT == "64Mi"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["labels"]["tunecluster.io/experiment"] == "pima-units"
    shared = next(m for m in container["volumeMounts"] if m["name"] == "shared")
    assert shared["mountPath"] == "/shared" and shared["readOnly"] is False
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["node-1"]
    reading = helper_pod(_spec(), "tuning")
    assert next(m for m in reading["spec"]["containers"][0]["volumeMounts"] if m["name"] == "shared")["readOnly"]
    assert reading["metadata"]["name"] != pod["metadata"]["name"]  # several transfers may run at once
    bare = helper_pod(_spec(), "tuning", volume=False)
    assert all(v["name"] != "shared" for v in bare["spec"]["volumes"])


def test_a_pod_side_csv_passes_the_local_preflight_only_on_kubernetes():
    spec = _spec()
    spec.data.csv = "/shared/data/train.csv"
    preflight(spec)  # checked in the cluster instead (backends/kubernetes/data_check.py)
    spec.cluster.backend = "local"
    with pytest.raises(UsageError, match="not found"):
        preflight(spec)


def test_a_pod_side_csv_travels_as_its_path_not_in_the_config_map():
    import yaml

    from tunecluster.backends.kubernetes.render import render

    spec = _spec()
    spec.data.csv = "/shared/data/train.csv"
    config = render(spec, namespace="tuning")[0]
    assert yaml.safe_load(config["data"]["spec.yaml"])["data"]["csv"] == "/shared/data/train.csv"
    assert set(config["data"]) == {"spec.yaml"}  # the model is a module of the image: nothing else carried


def test_a_file_replaced_while_the_tar_is_written_comes_whole(tmp_path):
    """The chief renames a new progress.json over the old every second; `send` must never put
    the new file's first bytes cut to the old one's size (what `tarfile.add` does) in the tar."""
    import tarfile
    import threading

    root = tmp_path / "volume"
    root.mkdir()
    stop, writes = threading.Event(), [0]

    def rewrite():
        while not stop.is_set():
            i = writes[0] = writes[0] + 1
            (root / "progress.tmp").write_text(json.dumps({"i": i, "pad": "x" * (i % 3000)}))
            os.replace(root / "progress.tmp", root / "progress.json")

    (root / "progress.json").write_text("{}")
    writer = threading.Thread(target=rewrite, daemon=True)
    writer.start()
    try:
        for _ in range(300):
            out = io.BytesIO()
            pod_side.send(str(root), ["progress.json"], out, io.StringIO())
            with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as archive:
                json.loads(archive.extractfile("progress.json").read())
    finally:
        stop.set()
        writer.join()
    assert writes[0] > 100  # the file was replaced throughout
