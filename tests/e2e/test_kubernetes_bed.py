"""Tests of the multi-node Kubernetes test bed (e2e/k8s): a real API server, Job controller,
scheduler, and two nodes, each with its own kubelet + containerd + kube-proxy in its own network
and mount namespaces; pods on both nodes talking across them, images pulled from the bed's
registry (TLS from the bed's CA, htpasswd) with an imagePullSecret, and a node lost and brought
back. Run with `python -m pytest -m e2e_kubernetes -s` as root."""

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


@pytest.fixture(scope="module")
def busybox(k8s_cluster, tmp_path_factory) -> str:
    """The busybox image, pushed to the bed's registry: the reference pods pull."""
    import testbed

    archive = testbed.make_busybox_image(tmp_path_factory.mktemp("busybox") / "busybox.tar")
    ref = k8s_cluster.push_image(archive, "tunecluster/busybox", "1.35")
    print(f"\n[bed] pushed {ref}")
    return ref


def _namespace(bed, name: str, labels: dict | None = None) -> None:
    """A namespace with the registry's pull secret."""
    bed.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}})
    bed.wait_for(f"service account {name}/default",
                 lambda: bed.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0, 60)
    bed.pull_secret(name)


PULL = {"imagePullSecrets": [{"name": "registry-credentials"}]}


def test_smoke_indexed_job_pvc_service_and_pod_replacement(k8s_cluster, busybox):
    bed = k8s_cluster
    t0 = time.monotonic()
    version = json.loads(bed.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    nodes = [n["metadata"]["name"] for n in bed.kubectl_json("get", "nodes")["items"]]
    print(f"\n[smoke] server version {version}; nodes {nodes}")
    assert nodes == bed.node_names and len(nodes) >= 2

    _namespace(bed, NS)
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
         "spec": {**PULL, "nodeSelector": {"kubernetes.io/hostname": bed.node_names[1]}, "containers": [{
             "name": "httpd", "image": busybox, "imagePullPolicy": "IfNotPresent",
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
            "template": {"metadata": {"labels": {"app": "indexed"}}, "spec": {
                **PULL, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "subdomain": "workers",
                # one index per node: the Service traffic and the shared volume cross nodes
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "DoNotSchedule",
                                               "labelSelector": {"matchLabels": {"app": "indexed"}}}],
                "containers": [{"name": "main", "image": busybox, "imagePullPolicy": "IfNotPresent",
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
    placed = {_index(p): p["spec"]["nodeName"] for p in pods}
    backend_node = bed.node_of("backend", NS)
    print(f"[smoke] backend on {backend_node}; indexed pods on {placed}")
    assert set(placed.values()) == set(bed.node_names[:2])  # one index per node
    assert backend_node == bed.node_names[1]  # index 0 or 1 reaches it from the other node

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
    print(f"[smoke] passed in {time.monotonic() - t0:.1f}s")


def _waiting_reason(bed, ns: str, pod: str) -> str:
    statuses = bed.kubectl_json("get", "pod", pod, "-n", ns)["status"].get("containerStatuses") or []
    return ((statuses[0].get("state") or {}).get("waiting") or {}).get("reason", "") if statuses else ""


def test_registry_pull_with_secret_only(k8s_cluster, busybox, tmp_path):
    """Images come from the bed's registry: a Docker image pushed there runs on the second node
    (the kubelet pulls it with the pod's imagePullSecret: the pod's imageID names the registry);
    without the secret the same image fails with ErrImagePull/ImagePullBackOff (401), and so does
    an image that was never pushed."""
    import shutil
    import subprocess

    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("no Docker daemon: the registry test pushes an image from it (start dockerd)")
    bed = k8s_cluster
    ns = "pulls"
    _namespace(bed, ns)
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    name = f"tunecluster-testbed-push:{int(time.time())}"
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-c", 'CMD ["sh"]', "-", name], stdin=tar.stdout, check=True,
                   capture_output=True)
    tar.wait()
    try:
        ref = bed.push_docker_image(name, "tunecluster/pushed")
    finally:
        subprocess.run(["docker", "rmi", name], capture_output=True, check=False)
    assert ref.startswith(bed.registry.host + "/"), ref
    assert not any(ref in image for node in bed.node_names for image in bed.images(node))  # not imported by hand
    second = bed.node_names[1]

    def pod(pod_name: str, image: str, secret: bool) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name}, "spec": {
            **(PULL if secret else {}), "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": second},
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Always",
                            "command": ["sh", "-c", "echo pulled-image-runs"]}]}}
    bed.apply([pod("with-secret", ref, True), pod("without-secret", ref, False),
               pod("never-pushed", bed.registry.ref("tunecluster/never-pushed", "1"), True)], namespace=ns)
    bed.wait_for("pod with-secret Succeeded", lambda: bed.kubectl_json(
        "get", "pod", "with-secret", "-n", ns)["status"].get("phase") == "Succeeded", 120, log=f"{second}-kubelet")
    got = bed.kubectl_json("get", "pod", "with-secret", "-n", ns)
    assert got["spec"]["nodeName"] == second
    assert got["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]
    image_id = got["status"]["containerStatuses"][0]["imageID"]
    print(f"[bed] {ref} pulled on {second} with secret registry-credentials: {image_id}")
    assert image_id.startswith(f"{bed.registry.host}/tunecluster/pushed@sha256:"), image_id
    assert "pulled-image-runs" in bed.kubectl("logs", "with-secret", "-n", ns).stdout
    for failing in ("without-secret", "never-pushed"):
        reason = bed.wait_for(f"{failing}: ErrImagePull", lambda f=failing: _waiting_reason(bed, ns, f) in (
            "ErrImagePull", "ImagePullBackOff") and _waiting_reason(bed, ns, f), 90)
        print(f"[bed] {failing}: {reason}")
    events = bed.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=without-secret").stdout
    assert "401" in events or "unauthorized" in events.lower(), events
    events = bed.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=never-pushed").stdout
    assert "not found" in events.lower(), events
    assert ref.split("/", 1)[1].split(":")[0] and bed.registry.has("tunecluster/pushed", ref.rsplit(":", 1)[1])


def test_node_lost_and_back(k8s_cluster, busybox):
    """stop_node() takes a node away as a spot instance goes (kubelet, containerd, its pods' processes):
    the control plane marks it NotReady and evicts its pods, a Deployment's pod moves to the other
    node; start_node() brings it back Ready and it runs pods again."""
    bed = k8s_cluster
    ns = "nodeloss"
    _namespace(bed, ns)
    lost, other = bed.node_names[0], bed.node_names[1]
    bed.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sleeper"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "sleeper"}},
        "template": {"metadata": {"labels": {"app": "sleeper"}}, "spec": {
            **PULL, "terminationGracePeriodSeconds": 1,
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [lost]}]}}]}},
            "containers": [{"name": "main", "image": busybox, "command": ["sleep", "3600"]}]}}}}, namespace=ns)

    def running_on() -> str:
        pods = bed.kubectl_json("get", "pods", "-n", ns, "-l", "app=sleeper")["items"]
        live = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        return live[0]["spec"]["nodeName"] if len(live) == 1 else ""
    assert bed.wait_for(f"sleeper Running on {lost}", lambda: running_on() == lost and lost, 120)
    sleeper_pids = bed.kubectl("exec", "-n", ns, "deploy/sleeper", "--", "sh", "-c", "echo $$").stdout.strip()
    assert sleeper_pids
    t0 = time.monotonic()
    bed.stop_node(lost)

    def condition() -> str:
        node = bed.kubectl_json("get", "node", lost)
        return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")
    bed.wait_for(f"{lost} NotReady", lambda: condition() != "True", 90, interval=1)
    not_ready = time.monotonic() - t0
    bed.wait_for(f"sleeper Running on {other}", lambda: running_on() == other, 180, interval=1)
    moved = time.monotonic() - t0
    print(f"[bed] stopped {lost}: NotReady after {not_ready:.0f} s, its pod running on {other} after {moved:.0f} s")
    taints = [t["key"] for t in bed.kubectl_json("get", "node", lost)["spec"].get("taints", [])]
    assert any(k.startswith(("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"))
               for k in taints), taints
    bed.start_node(lost)
    assert condition() == "True"
    bed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "back"}, "spec": {
        **PULL, "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": lost},
        "containers": [{"name": "main", "image": busybox, "command": ["sh", "-c", "echo node-is-back"]}]}},
        namespace=ns)
    bed.wait_for("pod back Succeeded", lambda: bed.kubectl_json("get", "pod", "back", "-n", ns)["status"].get(
        "phase") == "Succeeded", 180, log=f"{lost}-kubelet")
    assert "node-is-back" in bed.kubectl("logs", "back", "-n", ns).stdout
    print(f"[bed] {lost} back and running pods {time.monotonic() - t0:.0f} s after it was stopped")
    bed.kubectl("delete", "namespace", ns, "--wait=false")


def test_restricted_pod_with_limits_runs(k8s_cluster, busybox):
    """A pod as the backend will likely write it: Pod Security `restricted` enforced on its namespace,
    non-root user, no capabilities, RuntimeDefault seccomp, read-only root, Guaranteed QoS (cgroup v1
    limits), writing to a claim of the default StorageClass."""
    bed = k8s_cluster
    ns = "restricted"
    _namespace(bed, ns, {"pod-security.kubernetes.io/enforce": "restricted"})
    bed.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}}},
              namespace=ns)
    bed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "locked-down"}, "spec": {
        **PULL, "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "main", "image": busybox, "imagePullPolicy": "IfNotPresent",
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


def _run_pod(bed, ns: str, name: str, image: str, script: str, claim: str, node: str | None = None) -> dict:
    """A pod that runs `script` with the claim at /data; waits for it to succeed, returns it."""
    bed.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        **PULL, "restartPolicy": "Never", **({"nodeSelector": {"kubernetes.io/hostname": node}} if node else {}),
        "containers": [{"name": "main", "image": image, "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}, namespace=ns)
    bed.wait_for(f"pod {name} Succeeded", lambda: bed.kubectl_json("get", "pod", name, "-n", ns)["status"].get(
        "phase") == "Succeeded", 120, log=f"{node or bed.node_names[0]}-kubelet")
    return bed.kubectl_json("get", "pod", name, "-n", ns)


def test_rwx_volume_written_on_one_node_read_on_the_other(k8s_cluster, busybox):
    """The default class is ReadWriteMany on the FUSE network filesystem that every node mounts in
    its own mount namespace: a pod on node A writes, a pod on node B reads it through B's mount."""
    bed = k8s_cluster
    ns = "rwx"
    _namespace(bed, ns)
    bed.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared"},
               "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}},
              namespace=ns)
    bed.wait_for("claim rwx/shared Bound",
                 lambda: bed.kubectl_json("get", "pvc", "shared", "-n", ns)["status"].get("phase") == "Bound", 60)
    claim = bed.kubectl_json("get", "pvc", "shared", "-n", ns)
    assert claim["spec"]["storageClassName"] == "tunecluster-rwx"
    assert claim["status"]["accessModes"] == ["ReadWriteMany"]
    pv = bed.kubectl_json("get", "pv", claim["spec"]["volumeName"])
    assert pv["spec"]["hostPath"]["path"].startswith(str(bed.shared_mount) + "/")
    mounts = {node: bed.node_mount(node) for node in bed.node_names}
    for node, line in mounts.items():
        print(f"[bed] {node} mounts the shared filesystem: {line}")
    assert all(" fuse.sshfs " in line for line in mounts.values()), mounts
    a, b = bed.node_names[0], bed.node_names[1]
    writer = _run_pod(bed, ns, "writer", busybox, "echo written-on-$NODE > /data/note".replace(
        "$NODE", a), "shared", a)
    reader = _run_pod(bed, ns, "reader", busybox, "cat /data/note", "shared", b)
    assert (writer["spec"]["nodeName"], reader["spec"]["nodeName"]) == (a, b)
    assert bed.kubectl("logs", "reader", "-n", ns).stdout.strip() == f"written-on-{a}"
    assert (bed.volume_path("shared", ns) / "note").read_text().strip() == f"written-on-{a}"  # on the server


def test_rwo_local_path_volume_pins_its_pods_to_one_node(k8s_cluster, busybox):
    """The ReadWriteOnce class is rancher's local-path-provisioner: the claim binds when its first
    pod is scheduled, its PV has node affinity to that node, and a later pod of the claim lands there."""
    bed = k8s_cluster
    ns = "rwo"
    _namespace(bed, ns)
    bed.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "local"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "tunecluster-rwo",
                        "resources": {"requests": {"storage": "100Mi"}}}}, namespace=ns)
    assert bed.kubectl_json("get", "pvc", "local", "-n", ns)["status"].get("phase") == "Pending"  # WaitForFirstConsumer
    first = _run_pod(bed, ns, "first", busybox, "echo kept-on-this-node > /data/note", "local")
    claim = bed.kubectl_json("get", "pvc", "local", "-n", ns)
    assert claim["status"]["phase"] == "Bound" and claim["status"]["accessModes"] == ["ReadWriteOnce"]
    pv = bed.kubectl_json("get", "pv", claim["spec"]["volumeName"])
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    pinned = terms[0]["matchExpressions"][0]["values"]
    print(f"[bed] rwo claim {claim['spec']['volumeName']} pinned to {pinned}; first pod on {first['spec']['nodeName']}")
    assert pinned == [first["spec"]["nodeName"]]
    second = _run_pod(bed, ns, "second", busybox, "cat /data/note", "local")
    assert second["spec"]["nodeName"] == first["spec"]["nodeName"]
    assert bed.kubectl("logs", "second", "-n", ns).stdout.strip() == "kept-on-this-node"
    local = bed.volume_path("local", ns)
    assert (local / "note").read_text().strip() == "kept-on-this-node"
    other = next(n for n in bed.node_names if n != pinned[0])
    assert not (bed.node(other).dir / "local-path" / local.relative_to(bed.node(pinned[0]).dir / "local-path")).exists()
