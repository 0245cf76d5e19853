"""`tunecluster tensorboard`'s one-line errors without a cluster: an unreachable API server, and
`--deploy` on a local run."""

from __future__ import annotations

import json
import socket



def _kubernetes_run(tmp_path, server: str):
    from tunecluster.tuning.spec_source import resolve_spec
    from tunecluster.tuning.spec import dump_spec

    run = tmp_path / "run"
    run.mkdir()
    spec, _ = resolve_spec(None, "pima-optimizer")
    (run / "spec.yaml").write_text(dump_spec(spec))
    (run / "cluster.json").write_text(json.dumps({"backend": "kubernetes", "namespace": "ml", "context": None}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    return run, kubeconfig


def test_tensorboard_of_an_unreachable_cluster_is_one_line(tmp_path, cli):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        closed_port = sock.getsockname()[1]
    run, kubeconfig = _kubernetes_run(tmp_path, f"http://127.0.0.1:{closed_port}")
    result = cli("tensorboard", "--dir", str(run), cwd=tmp_path, timeout=120, env={"KUBECONFIG": str(kubeconfig)})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "cannot reach the Kubernetes API server while reading Deployment" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_deploy_on_a_local_run_is_one_line(tmp_path, cli):
    run, _ = _kubernetes_run(tmp_path, "http://127.0.0.1:1")
    (run / "cluster.json").write_text(json.dumps({"backend": "local", "roles": []}))
    result = cli("tensorboard", "--dir", str(run), "--deploy", cwd=tmp_path, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "--deploy is for Kubernetes runs" in lines[0], result.stderr
