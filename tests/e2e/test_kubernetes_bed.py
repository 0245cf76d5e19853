"""Smoke test of the Kubernetes test bed (e2e/k8s): a real API server, Job controller, scheduler,
kubelet + containerd and kube-proxy. Run with `python -m pytest -m e2e_kubernetes -s` as root."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = [pytest.mark.e2e_kubernetes, pytest.mark.timeout(900)]

NS = "smoke"


def _pods(bed, selector: str) -> list[dict]:
    return bed.kubectl_json("get", "pods", "-n", NS, "-l", selector)["items"]


def _index(pod: dict) -> str:
    return pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]


def _why_failed(bed, pod: dict) -> str:
    """A failed pod in one line: its reason, conditions, exit codes and log."""
    status = pod["status"]
    codes = [(c.get("state") or {}).get("terminated", {}).get("exitCode") for c in status.get("containerStatuses", [])]
    conditions = [c["type"] for c in status.get("conditions", []) if c.get("status") == "True"]
    log = bed.kubectl("logs", "-n", NS, pod["metadata"]["name"], check=False).stdout.strip().replace("\n", " | ")
    return (f"{pod['metadata']['name']} (index {_index(pod)}): reason {status.get('reason')!r} "
            f"{status.get('message', '')!r}, conditions {conditions}, exit codes {codes}, log: {log}")


def test_smoke_indexed_job_pvc_service_and_pod_replacement(k8s_cluster, tmp_path):
    import testbed

    bed = k8s_cluster
    t0 = time.monotonic()
    version = json.loads(bed.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    nodes = [n["metadata"]["name"] for n in bed.kubectl_json("get", "nodes")["items"]]
    print(f"\n[smoke] server version {version}; nodes {nodes}")
    assert nodes == [bed.node_name]

    image = testbed.make_busybox_image(tmp_path / "busybox.tar")
    assert testbed.BUSYBOX_IMAGE in bed.import_image(image)
    assert testbed.BUSYBOX_IMAGE in bed.images()

    bed.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    bed.wait_for("service account smoke/default",
                 lambda: bed.kubectl("get", "sa", "default", "-n", NS, check=False).returncode == 0, 60)
    # The shared volume: a claim of the test bed's default StorageClass, bound to a hostPath PV.
    bed.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared"},
               "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}},
              namespace=NS)
    bed.wait_for("claim smoke/shared Bound",
                 lambda: bed.kubectl_json("get", "pvc", "shared", "-n", NS)["status"].get("phase") == "Bound", 60)
    shared = bed.volume_path("shared", NS)

    # A Service backed by another pod.
    bed.apply([
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "backend", "labels": {"app": "backend"}},
         "spec": {"containers": [{
             "name": "httpd", "image": testbed.BUSYBOX_IMAGE, "imagePullPolicy": "Never",
             "command": ["sh", "-c", "mkdir -p /www && echo hello-from-backend > /www/index.html && exec httpd -f -p 8080 -h /www"],
             "ports": [{"containerPort": 8080}],
             "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
         "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "workers"},
         "spec": {"clusterIP": "None", "selector": {"job-name": "indexed"}, "ports": [{"port": 9000}]}},
    ], namespace=NS)
    bed.wait_for("backend pod Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in bed.kubectl_json("get", "pod", "backend", "-n", NS)["status"].get("conditions", [])), 120)

    script = r"""
set -e
i=$JOB_COMPLETION_INDEX
echo "index $i on $(hostname)"
# A client retries for a while, as real ones do: kube-proxy programs a Service's rules a moment
# after its endpoint turns ready (its sync loop), so the first try may be refused on a busy node.
fetch() {  # URL FILE: the backend's page, within 30 s
  n=0
  until timeout 10 wget -q -O "$2" "$1" && grep -q hello-from-backend "$2"; do
    sleep 0.5; n=$((n+1)); [ $n -lt 60 ] || { echo "no answer from $1"; exit 5; }
  done
  [ $n -eq 0 ] || echo "$1 answered after $n retries"
}
# the Service, by its environment variables and by its ClusterIP
fetch http://$BACKEND_SERVICE_HOST:$BACKEND_SERVICE_PORT/ /tmp/r
# ... and by DNS name (short name through the pod's search path, and the full name)
fetch http://backend/ /tmp/r2
fetch http://backend.smoke.svc.cluster.local/ /tmp/r3
# this pod's own stable name behind the headless Service (hostname indexed-<i>, subdomain workers)
n=0
until nslookup indexed-$i.workers.smoke.svc.cluster.local 2>/dev/null | grep -q "$(hostname -i)"; do
  sleep 0.5; n=$((n+1)); [ $n -lt 60 ] || { echo "no DNS record for indexed-$i.workers"; exit 4; }
done
# the API server, through the in-cluster `kubernetes` Service
n=0
until timeout 10 wget -q --no-check-certificate -O /tmp/v https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/version \
    && grep -q gitVersion /tmp/v; do
  sleep 0.5; n=$((n+1)); [ $n -lt 60 ] || { echo "no answer from the API server's Service"; exit 6; }
done
[ $n -eq 0 ] || echo "the API server's Service answered after $n retries"
echo "$i $(hostname)" >> /shared/started-$i
n=0
while [ ! -f /shared/release ]; do sleep 0.5; n=$((n+1)); [ $n -lt 600 ] || exit 3; done
echo "$i $(hostname)" > /shared/done-$i
echo "index $i done"
"""
    bed.apply({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "indexed"},
        "spec": {
            "completionMode": "Indexed", "completions": 2, "parallelism": 2,
            "backoffLimitPerIndex": 2, "maxFailedIndexes": 0,
            "podFailurePolicy": {"rules": [
                {"action": "FailIndex", "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {"spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "subdomain": "workers",
                "containers": [{"name": "main", "image": testbed.BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", script],
                                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}],
                "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}]}},
        }}, namespace=NS)

    def started(i: int) -> list[str]:
        f = shared / f"started-{i}"
        return f.read_text().splitlines() if f.exists() else []

    bed.wait_for("both indices running", lambda: started(0) and started(1), 180, log="kubelet")
    pods = _pods(bed, "job-name=indexed")
    failed = [p for p in pods if p["status"].get("phase") == "Failed"]
    assert not failed, "pods failed: " + "; ".join(_why_failed(bed, p) for p in failed)
    assert sorted(_index(p) for p in pods) == ["0", "1"]

    # Delete index 1's pod mid-run: the Job controller makes a new pod with the same index.
    victim = next(p for p in pods if _index(p) == "1")
    bed.kubectl("delete", "pod", victim["metadata"]["name"], "-n", NS, "--wait=false")
    replacement = bed.wait_for("a replacement pod for index 1", lambda: [
        p for p in _pods(bed, "job-name=indexed")
        if _index(p) == "1" and p["metadata"]["uid"] != victim["metadata"]["uid"]], 120)
    print(f"[smoke] deleted {victim['metadata']['name']}, replacement {replacement[0]['metadata']['name']}")
    bed.wait_for("the replacement pod to start index 1", lambda: len(started(1)) >= 2, 180, log="kubelet")
    assert len(started(0)) == 1

    (shared / "release").write_text("go\n")

    def complete():
        job = bed.kubectl_json("get", "job", "indexed", "-n", NS)
        if any(c["type"] == "Failed" and c["status"] == "True" for c in job["status"].get("conditions", [])):
            raise AssertionError(f"job failed: {job['status']}")
        return job if any(c["type"] == "Complete" and c["status"] == "True"
                          for c in job["status"].get("conditions", [])) else None
    job = bed.wait_for("job indexed Complete", complete, 180, log="kube-controller-manager")
    assert job["status"]["succeeded"] == 2
    assert job["status"]["completedIndexes"] == "0,1"
    assert (shared / "done-0").exists() and (shared / "done-1").exists()

    # Logs come from the kubelet through the API server.
    for pod in _pods(bed, "job-name=indexed"):
        if pod["status"]["phase"] == "Succeeded":
            out = bed.kubectl("logs", "-n", NS, pod["metadata"]["name"]).stdout
            assert f"index {_index(pod)} done" in out
            for line in out.splitlines():
                if "retries" in line:
                    print(f"[smoke] {pod['metadata']['name']}: {line}")
    assert not bed.provisioner_errors, bed.provisioner_errors
    print(f"[smoke] passed in {time.monotonic() - t0:.1f}s")


def test_import_docker_save_archive(k8s_cluster, tmp_path):
    """An image made by the local Docker daemon (`docker save`) runs as a pod: the route the project
    image takes into the test bed."""
    import shutil
    import subprocess

    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon to make a docker-save archive")
    bed = k8s_cluster
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    name = f"tunecluster-testbed-import:{int(time.time())}"
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-c", 'CMD ["sh"]', "-", name], stdin=tar.stdout, check=True,
                   capture_output=True)
    tar.wait()
    try:
        out = bed.import_docker_image(name)
    finally:
        subprocess.run(["docker", "rmi", name], capture_output=True)
    assert f"docker.io/library/{name}" in out, out
    bed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "from-docker", "namespace": "default"},
               "spec": {"restartPolicy": "Never", "containers": [{
                   "name": "main", "image": name, "imagePullPolicy": "Never",
                   "command": ["sh", "-c", "echo imported-image-runs"]}]}})
    bed.wait_for("pod from-docker Succeeded", lambda: bed.kubectl_json(
        "get", "pod", "from-docker")["status"].get("phase") == "Succeeded", 120, log="kubelet")
    assert "imported-image-runs" in bed.kubectl("logs", "from-docker").stdout


def test_restricted_pod_with_limits_runs(k8s_cluster, tmp_path):
    """A pod as the backend will likely write it: Pod Security `restricted` enforced on its namespace,
    non-root user, no capabilities, RuntimeDefault seccomp, read-only root, Guaranteed QoS (cgroup v1
    limits), writing to a claim of the default StorageClass."""
    import testbed

    bed = k8s_cluster
    bed.import_image(testbed.make_busybox_image(tmp_path / "busybox.tar"))
    ns = "restricted"
    bed.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    bed.wait_for(f"service account {ns}/default",
                 lambda: bed.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 60)
    bed.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}}},
              namespace=ns)
    bed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "locked-down"}, "spec": {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "main", "image": testbed.BUSYBOX_IMAGE, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "id -u; echo written-by-$(id -u) > /data/out; cat /proc/self/status | grep Seccomp:"],
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}, namespace=ns)
    bed.wait_for("pod locked-down Succeeded", lambda: bed.kubectl_json(
        "get", "pod", "locked-down", "-n", ns)["status"].get("phase") == "Succeeded", 120, log="kubelet")
    pod = bed.kubectl_json("get", "pod", "locked-down", "-n", ns)
    assert pod["status"]["qosClass"] == "Guaranteed"
    out = bed.kubectl("logs", "-n", ns, "locked-down").stdout
    assert out.splitlines()[0] == "1000"
    assert "Seccomp:\t2" in out  # filter mode: the runtime's default profile is on
    assert (bed.volume_path("data", ns) / "out").read_text().strip() == "written-by-1000"
