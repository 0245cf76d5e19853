"""`tunecluster render --backend kubernetes` from the command line: the oracle token stays out of
the output unless asked for."""

from __future__ import annotations

import yaml

from tunecluster.tuning.examples import example_spec
from tunecluster.tuning.spec import validate_spec


def _spec(**cluster):
    raw = example_spec("pima-units").model_dump(mode="json")
    raw["cluster"].update(workers=3, **cluster)
    return validate_spec(raw, "test")


def test_render_cli_keeps_the_token_out_unless_asked(cli, tmp_path):
    plain = cli("render", "--example", "pima-optimizer", "--workers", "2", "-n", "team", cwd=tmp_path, timeout=60)
    assert plain.returncode == 0, plain.stderr
    docs = [d for d in yaml.safe_load_all(plain.stdout) if d]
    assert "Secret" not in {d["kind"] for d in docs} and "create secret generic" in plain.stdout
    assert all(d["metadata"]["namespace"] == "team" for d in docs)
    with_secret = cli("render", "--example", "pima-optimizer", "--include-secret", cwd=tmp_path, timeout=60)
    secret = next(d for d in yaml.safe_load_all(with_secret.stdout) if d and d["kind"] == "Secret")
    assert len(secret["stringData"]["token"]) >= 32
    role = cli("render", "--rbac", "-n", "team", "--user", "alice", cwd=tmp_path, timeout=60)
    kinds = [d["kind"] for d in yaml.safe_load_all(role.stdout) if d]
    assert kinds == ["Role", "RoleBinding"]




def test_a_two_module_project_renders_and_imports_after_the_init_container_unpacks_it(cli, tmp_path):
    """`render` of a project whose model imports a sibling module: the ConfigMap parts, unpacked
    by the init container's own script, give a folder where the pod's import works."""
    import base64
    import os
    import subprocess
    import sys

    project = tmp_path / "project"
    (project / "nets").mkdir(parents=True)
    (project / "nets" / "__init__.py").write_text("")
    (project / "nets" / "blocks.py").write_text("def width():\n    return 7\n")
    (project / "model.py").write_text("from nets.blocks import width\n\ndef build(hp):\n    return width()\n")
    (project / "tunecluster.yaml").write_text(
        "name: two-modules\nhypermodel: model.py:build\nrun_trial: null\n"
        "cluster:\n  kubernetes:\n    image_pull_secrets: [regcred]\n")
    done = cli("render", "-f", str(project / "tunecluster.yaml"), "-n", "team", cwd=project, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    parts = sorted((d for d in docs if d["metadata"]["name"].startswith("two-modules-code-")),
                   key=lambda d: d["metadata"]["name"])
    assert parts and all(d["kind"] == "ConfigMap" for d in parts)
    inner = yaml.safe_load(next(d for d in docs if d["metadata"]["name"] == "two-modules-config")["data"]["spec.yaml"])
    assert inner["hypermodel"] == "/code/model.py:build"
    chief = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "two-modules-chief")
    pod = chief["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    init = pod["initContainers"][0]
    parts_dir, code_dir = tmp_path / "parts", tmp_path / "code"
    parts_dir.mkdir()
    code_dir.mkdir()
    for i, part in enumerate(parts):
        (parts_dir / f"part-{i:04d}").write_bytes(base64.b64decode(part["binaryData"]["part"]))
    script = init["command"][2].replace("/parts/", f"{parts_dir}/").replace("'/code'", repr(str(code_dir)))
    env = {**os.environ, **{e["name"]: e["value"] for e in init["env"]}}
    unpacked = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert unpacked.returncode == 0, unpacked.stderr
    imported = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                               "from model import build; print(build(None))", str(code_dir)],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert imported.stdout.strip() == "7", imported.stderr
