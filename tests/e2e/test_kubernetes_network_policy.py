"""NetworkPolicy is enforced on the test bed (kube-router's network policy controller on every
node, e2e/k8s/testbed.py): facts seen from pods with `kubectl exec`, across nodes and on one node.

- A policy that admits only pods with a label to one port of a server: before it every client
  reaches the server; after it the labelled client on the other node still connects, clients
  without the label (on the other node and on the server's own node) are refused, the labelled
  client is refused on a port the policy does not name; labelling a refused client lets it in,
  and deleting the policy lets everyone in again.
- tunecluster's own rendered chief NetworkPolicy (and chief Service), applied as `up` applies
  them, over stand-in pods that carry the rendered chief and worker pod labels: the experiment's
  worker reaches the oracle port through the chief Service, the experiment's TensorBoard pod and
  another experiment's worker are refused.

Run with `python -m pytest -m e2e_kubernetes -s` as root."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.e2e_kubernetes, pytest.mark.timeout(900)]

PULL = {"imagePullSecrets": [{"name": "registry-credentials"}]}
ENFORCED_WITHIN = 60  # seconds from a policy change to the nodes' iptables following it


def _namespace(bed, name: str) -> None:
    bed.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    bed.wait_for(f"service account {name}/default",
                 lambda: bed.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0, 60)
    bed.pull_secret(name)


def _pod(bed, name: str, labels: dict, node: str, command: str, ports: list | None = None,
         probe_port=None) -> dict:
    container = {"name": "main", "image": bed.busybox_ref, "imagePullPolicy": "IfNotPresent",
                 "command": ["sh", "-c", command]}
    if ports:
        container["ports"] = ports
    if probe_port is not None:
        container["readinessProbe"] = {"tcpSocket": {"port": probe_port}, "periodSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {**PULL, "terminationGracePeriodSeconds": 0,
                     "nodeSelector": {"kubernetes.io/hostname": node}, "containers": [container]}}


def _httpd(ports: list[int]) -> str:
    """A shell line: busybox httpd answering `hello-<port>` on each port."""
    serve = " ".join(f"mkdir -p /www{p} && echo hello-{p} > /www{p}/index.html && httpd -p {p} -h /www{p} &&"
                     for p in ports)
    return f"{serve} exec sleep 3600"


def _ready(bed, ns: str, names: list[str], timeout: float = 120) -> dict[str, dict]:
    def ready() -> dict[str, dict] | None:
        pods = {p["metadata"]["name"]: p for p in bed.kubectl_json("get", "pods", "-n", ns)["items"]}
        ok = all(any(c["type"] == "Ready" and c["status"] == "True"
                     for c in pods.get(n, {}).get("status", {}).get("conditions", [])) for n in names)
        return pods if ok else None
    return bed.wait_for(f"pods {', '.join(names)} Ready in {ns}", ready, timeout)


def _reach(bed, ns: str, pod: str, host: str, port: int) -> tuple[bool, str]:
    """Whether `pod` gets the page of host:port (busybox wget, at most 5 s), and what wget said."""
    script = (f"timeout 5 wget -q -O - http://{host}:{port}/; rc=$?; "
              "[ $rc -lt 128 ] || echo 'no answer within 5 s (timed out)' >&2; exit $rc")
    proc = bed.kubectl("exec", "-n", ns, pod, "--", "sh", "-c", script, check=False, timeout=60)
    said = " ".join((proc.stdout + proc.stderr).split())
    return proc.returncode == 0 and f"hello-{port}" in proc.stdout, said


def _until(bed, what: str, ns: str, pod: str, host: str, port: int, reached: bool, timeout: float = ENFORCED_WITHIN):
    """Wait until `pod` reaches (or is kept from) host:port; returns the seconds it took and wget's words."""
    t0 = time.monotonic()

    def as_wanted() -> str | None:
        got, said = _reach(bed, ns, pod, host, port)
        return (said or "ok") if got == reached else None
    said = bed.wait_for(what, as_wanted, timeout, interval=0.5)
    return time.monotonic() - t0, said


def _assert_refused(bed, ns: str, pod: str, host: str, port: int, times: int = 3) -> str:
    """`pod` is kept from host:port `times` times in a row; returns wget's words the last time."""
    said = ""
    for _ in range(times):
        reached, said = _reach(bed, ns, pod, host, port)
        assert not reached, f"{pod} reached {host}:{port} through the policy: {said}"
    return said


def test_network_policy_admits_only_labelled_pods(k8s_cluster):
    """A policy admitting pods labelled access=granted to the server's port 8080: the labelled pod
    on the other node gets in, unlabelled pods on both nodes and port 8081 are refused; a label
    added later and the policy's deletion are followed."""
    bed = k8s_cluster
    ns = "netpol"
    _namespace(bed, ns)
    near, far = bed.node_names[1], bed.node_names[0]  # the server's node, the other node
    bed.apply([
        _pod(bed, "server", {"app": "server"}, near, _httpd([8080, 8081]),
             ports=[{"containerPort": 8080}, {"containerPort": 8081}], probe_port=8080),
        _pod(bed, "granted", {"access": "granted"}, far, "exec sleep 3600"),
        _pod(bed, "stranger", {}, far, "exec sleep 3600"),
        _pod(bed, "neighbour", {}, near, "exec sleep 3600"),
    ], namespace=ns)
    pods = _ready(bed, ns, ["server", "granted", "stranger", "neighbour"])
    server = pods["server"]["status"]["podIP"]
    placed = {name: pods[name]["spec"]["nodeName"] for name in ("server", "granted", "stranger", "neighbour")}
    print(f"\n[netpol] server {server} on {near}; placed {placed}")
    assert placed == {"server": near, "granted": far, "stranger": far, "neighbour": near}

    # Without a policy every client reaches both ports: a refusal later is the policy's doing.
    for client in ("granted", "stranger", "neighbour"):
        for port in (8080, 8081):
            _until(bed, f"{client} reaches {server}:{port} before any policy", ns, client, server, port, True)

    t0 = time.monotonic()
    bed.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "server-8080"},
               "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "granted"}}}],
                                     "ports": [{"port": 8080, "protocol": "TCP"}]}]}}, namespace=ns)
    _, said = _until(bed, "the stranger (other node) refused", ns, "stranger", server, 8080, False)
    enforced = time.monotonic() - t0
    print(f"[netpol] policy server-8080 enforced within {enforced:.1f} s of being applied; stranger: {said!r}")
    _until(bed, "the neighbour (server's node) refused", ns, "neighbour", server, 8080, False)

    for _ in range(3):
        reached, said = _reach(bed, ns, "granted", server, 8080)
        assert reached, f"the labelled pod on {far} was kept out: {said}"
    words = {client: _assert_refused(bed, ns, client, server, 8080) for client in ("stranger", "neighbour")}
    words["granted:8081"] = _assert_refused(bed, ns, "granted", server, 8081)  # a port the policy does not name
    print(f"[netpol] granted reaches :8080; refused: {words}")
    assert all("refused" in w.lower() or "timed out" in w.lower() for w in words.values()), words

    # The policy follows labels: label the stranger and it gets in.
    bed.kubectl("label", "pod", "stranger", "-n", ns, "access=granted")
    took, _ = _until(bed, "the newly labelled stranger admitted", ns, "stranger", server, 8080, True)
    print(f"[netpol] stranger labelled access=granted: admitted after {took:.1f} s")
    _assert_refused(bed, ns, "neighbour", server, 8080)

    # Without the policy the neighbour gets in again.
    bed.kubectl("delete", "networkpolicy", "server-8080", "-n", ns)
    took, _ = _until(bed, "the neighbour admitted once the policy is gone", ns, "neighbour", server, 8080, True)
    print(f"[netpol] policy deleted: neighbour admitted after {took:.1f} s; test took {time.monotonic() - t0:.1f} s "
          "from the policy's creation")
    bed.kubectl("delete", "namespace", ns, "--wait=false")


def test_tunecluster_chief_policy_admits_its_workers_only(k8s_cluster):
    """tunecluster's rendered NetworkPolicy `<name>-oracle` and Service `<name>-chief`, applied as
    they are; stand-in pods (busybox on the oracle port) carry the rendered pod labels."""
    from tunecluster.backends.kubernetes.render import render
    from tunecluster.tuning.examples import example_spec
    from tunecluster.tuning.spec import validate_spec

    bed = k8s_cluster
    ns = "netpol-chief"
    _namespace(bed, ns)
    raw = example_spec("pima-units").model_dump(mode="json")
    raw["cluster"].update(workers=2)
    spec = validate_spec(raw, "test")
    objects = render(spec, namespace=ns, token="t0ken")
    exp = spec.name
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == f"{exp}-chief")
    jobs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Job"}
    chief_job, workers_job = jobs[f"{exp}-chief"], jobs[f"{exp}-workers"]
    chief_labels = chief_job["spec"]["template"]["metadata"]["labels"]
    worker_labels = workers_job["spec"]["template"]["metadata"]["labels"]
    chief_container = chief_job["spec"]["template"]["spec"]["containers"][0]
    port = service["spec"]["ports"][0]["port"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": port, "protocol": "TCP"}]
    print(f"\n[netpol] tunecluster's {policy['metadata']['name']}: {policy['spec']}")

    near, far = bed.node_names[1], bed.node_names[0]
    other_worker = {**worker_labels, "tunecluster.io/experiment": "another-experiment",
                    "app.kubernetes.io/instance": "another-experiment"}
    tensorboard = {**worker_labels, "tunecluster.io/role": "tensorboard"}
    bed.apply([
        _pod(bed, "chief", chief_labels, near, _httpd([port]), ports=chief_container["ports"], probe_port="oracle"),
        _pod(bed, "worker", worker_labels, far, "exec sleep 3600"),
        _pod(bed, "tensorboard", tensorboard, far, "exec sleep 3600"),
        _pod(bed, "other-worker", other_worker, near, "exec sleep 3600"),
        service,
    ], namespace=ns)
    _ready(bed, ns, ["chief", "worker", "tensorboard", "other-worker"])
    chief = f"{exp}-chief.{ns}.svc.cluster.local"  # through the rendered Service, as the workers do
    for client in ("worker", "tensorboard", "other-worker"):
        _until(bed, f"{client} reaches {chief}:{port} before the policy", ns, client, chief, port, True)

    bed.apply(policy, namespace=ns)
    _until(bed, "another experiment's worker refused", ns, "other-worker", chief, port, False)
    _until(bed, "the experiment's TensorBoard pod refused", ns, "tensorboard", chief, port, False)
    for _ in range(3):
        reached, said = _reach(bed, ns, "worker", chief, port)
        assert reached, f"the experiment's worker was kept from the oracle port: {said}"
    words = {client: _assert_refused(bed, ns, client, chief, port) for client in ("tensorboard", "other-worker")}
    print(f"[netpol] {exp}'s worker reaches the chief's oracle port {port}; refused: {words}")
    bed.kubectl("delete", "namespace", ns, "--wait=false")
