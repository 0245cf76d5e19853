"""The user's project folder reaching the pods: sibling modules and packages carried, ignored
files and big data left out, the size limit refused in one line before anything is written, the
init container's script unpacking the parts (checked against the digest), and `code: image`."""

from __future__ import annotations

import base64
import io
import random
import tarfile

import pytest

from tunecluster.backends.kubernetes.code_bundle import PART_BYTES, UNPACK_SCRIPT, bundle_project, code_root
from tunecluster.backends.kubernetes.render import carry_files, check_carried, render
from tunecluster.core.errors import UsageError
from tunecluster.tuning.preflight import preflight
from tunecluster.tuning.spec import validate_spec


def _project(root):
    (root / "pkg" / "nets").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "nets" / "__init__.py").write_text("")
    (root / "pkg" / "nets" / "model.py").write_text("from pkg.layers import block\ndef build(hp):\n    return block()\n")
    (root / "pkg" / "layers.py").write_text("def block():\n    return None\n")
    (root / "helpers.py").write_text("X = 1\n")
    (root / ".gitignore").write_text("secrets.txt\nscratch/\n")
    (root / "secrets.txt").write_text("nope")
    (root / "scratch").mkdir()
    (root / "scratch" / "a.py").write_text("")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "layers.cpython-312.pyc").write_bytes(b"x")
    (root / ".venv").mkdir()
    (root / ".venv" / "lib.py").write_text("")
    (root / "tunecluster-runs").mkdir()
    (root / "tunecluster-runs" / "state.json").write_text("{}")
    (root / "weights.bin").write_bytes(b"\0" * 600 * 1024)
    return root / "pkg" / "nets" / "model.py"


def _spec(ref, **k8s):
    return validate_spec({"name": "mine", "hypermodel": ref, "cluster": {"kubernetes": k8s}}, "test")


def test_the_whole_project_is_carried_minus_ignored_files(tmp_path):
    model = _project(tmp_path)
    assert code_root(f"{model}:build") == tmp_path  # the folder above the top package
    carried = carry_files(_spec(f"{model}:build"))
    assert sorted(carried.bundle.files) == [".gitignore", "helpers.py", "pkg/__init__.py", "pkg/layers.py",
                                            "pkg/nets/__init__.py", "pkg/nets/model.py"]
    assert carried.bundle.left_out == ["weights.bin (600 KiB)"]
    assert "weights.bin" in carried.notes[0]
    assert carried.spec.hypermodel == "/code/pkg/nets/model.py:build"
    # the same project gives the same bytes (a re-apply changes nothing)
    assert carry_files(_spec(f"{model}:build")).bundle.archive == carried.bundle.archive


def test_a_local_module_reference_carries_its_package(tmp_path, monkeypatch):
    _project(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    carried = carry_files(_spec("pkg.nets.model:build"))
    assert carried.bundle.root == tmp_path and carried.spec.hypermodel == "pkg.nets.model:build"
    # an installed module (tunecluster's own example) is in the image: nothing is carried
    assert carry_files(_spec("tunecluster.tuning.examples.pima:build_model")).bundle is None


def test_the_init_container_unpacks_the_parts_it_was_given(tmp_path):
    model = _project(tmp_path / "project")
    (tmp_path / "project" / "blob.txt").write_bytes(random.Random(0).randbytes(375 * 1024))  # incompressible
    spec = _spec(f"{model}:build", code_file_limit_kib=1024)
    objects = render(spec, namespace="ns")
    parts = [o for o in objects if o["metadata"]["name"].startswith("mine-code-")]
    assert len(parts) >= 2  # split under kubectl's annotation limit
    parts_dir, code_dir = tmp_path / "parts", tmp_path / "code"
    parts_dir.mkdir()
    code_dir.mkdir()
    for i, cm in enumerate(parts):
        data = base64.b64decode(cm["binaryData"]["part"])
        assert len(data) <= PART_BYTES
        (parts_dir / f"part-{i:04d}").write_bytes(data)
    pod = next(o for o in objects if o["kind"] == "Job")["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    digest = next(e["value"] for e in init["env"] if e["name"] == "TUNECLUSTER_CODE_SHA256")
    sources = pod["volumes"][[v["name"] for v in pod["volumes"]].index("code-parts")]["projected"]["sources"]
    assert [s["configMap"]["name"] for s in sources] == [cm["metadata"]["name"] for cm in parts]
    assert {"name": "PYTHONPATH", "value": "/code"} in pod["containers"][0]["env"]
    script = UNPACK_SCRIPT.replace("/parts/", f"{parts_dir}/").replace("'/code'", repr(str(code_dir)))
    import os

    os.environ["TUNECLUSTER_CODE_SHA256"] = digest
    try:
        exec(script, {})
        assert (code_dir / "pkg" / "layers.py").read_text() == "def block():\n    return None\n"
        assert (code_dir / "blob.txt").stat().st_size == 375 * 1024
        os.environ["TUNECLUSTER_CODE_SHA256"] = "0" * 64
        with pytest.raises(SystemExit, match="do not match"):
            exec(script, {})
    finally:
        del os.environ["TUNECLUSTER_CODE_SHA256"]


def test_a_project_over_the_limit_is_refused_in_one_line_before_anything_is_written(tmp_path):
    model = _project(tmp_path)
    (tmp_path / "noise.py").write_bytes(base64.b64encode(random.Random(0).randbytes(100 * 1024)))  # 133 KiB
    with pytest.raises(UsageError) as caught:
        check_carried(_spec(f"{model}:build", code_limit_kib=64))
    text = str(caught.value)
    assert "\n" not in text and "over cluster.kubernetes.code_limit_kib (64)" in text
    assert "noise.py" in text and "code: image" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".gitignore", ".venv", "helpers.py", "noise.py", "pkg", "scratch", "secrets.txt", "tunecluster-runs",
         "weights.bin"])  # nothing written


def test_a_folder_with_too_many_files_is_refused(tmp_path):
    (tmp_path / "model.py").write_text("def build(hp):\n    return None\n")
    many = tmp_path / "many"
    many.mkdir()
    for i in range(5001):
        (many / f"{i}.txt").write_text("")
    with pytest.raises(UsageError, match=r"5001 files .*project_dir"):
        bundle_project(tmp_path, limit_kib=4096, file_limit_kib=512)


def test_code_in_the_image_is_accepted_without_the_module_here(tmp_path):
    raw = {"name": "mine", "hypermodel": "teampkg.models:build",
           "data": {"csv": "/shared/data/train.csv"},
           "cluster": {"backend": "kubernetes", "kubernetes": {"code": "image", "image": "reg/team:1"}}}
    spec = validate_spec(raw, "test")
    preflight_spec = spec.model_copy(deep=True)
    preflight_spec.data.csv = None
    preflight_spec.data.loader = None
    preflight(preflight_spec)  # no error: the module is only in the image
    with pytest.raises(UsageError, match="cannot find module 'teampkg.models'"):
        local = preflight_spec.model_copy(deep=True)
        local.cluster.kubernetes.code = "auto"
        preflight(local)
    objects = render(spec, namespace="ns")
    assert not [o for o in objects if "-code-" in o["metadata"]["name"]]
    pod = next(o for o in objects if o["kind"] == "Job")["spec"]["template"]["spec"]
    assert "initContainers" not in pod


def test_code_project_without_local_code_says_what_to_do():
    with pytest.raises(UsageError, match="project_dir"):
        carry_files(_spec("teampkg.models:build", code="project"))


def test_the_archive_is_a_plain_tar_with_no_owners(tmp_path):
    model = _project(tmp_path)
    bundle = carry_files(_spec(f"{model}:build")).bundle
    with tarfile.open(fileobj=io.BytesIO(bundle.archive), mode="r:gz") as archive:
        members = archive.getmembers()
    assert all(m.isfile() and m.uid == 0 and m.mtime == 0 and not m.name.startswith("/") for m in members)
