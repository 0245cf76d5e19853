"""A real multi-node Kubernetes for tunecluster's end-to-end tests.

Starts, from the binaries that ``e2e/k8s/build.sh`` builds (one pinned release, see go.mod): etcd,
kube-apiserver, kube-controller-manager and kube-scheduler on the host, and N worker nodes (two by
default, ``tc-node-a``, ``tc-node-b``). Each node is its own network namespace and its own mount
namespace (an "anchor" process, entered with nsenter) running its own containerd (Debian's, with
runc and the CNI plugins; own root, state and socket), its own kubelet (cgroupfs driver, its own
``--root-dir`` and ``cgroupRoot: /<node>`` so that two kubelets never touch each other's cgroups)
and its own kube-proxy (iptables mode, in the node's own iptables), and kube-router's network policy
controller, which enforces NetworkPolicy objects with iptables and ipset in the node's own network
namespace (kube-router's routing and service proxy stay off: the bed routes and kube-proxy serves).
Everything the bed creates lives in one temporary folder and is removed by ``stop()``.

Addresses (all on this machine, nothing leaves it):
- The host bridge ``tcnodes`` (10.250.0.1/24) with one veth per node: node i has 10.250.0.(i+2).
  kube-apiserver listens and advertises on 10.250.0.1 (the kubeconfig points there); etcd,
  controller-manager and scheduler listen on 127.0.0.1.
- Pods: node i owns 10.244.(i+1).0/24 on its own CNI bridge ``cni0`` inside its namespace; static
  routes on the host and in every node send another node's pod range to that node's address
  ("host-gw" routing, as flannel's host-gw backend does), so pods on different nodes talk directly.
- Services: ClusterIPs in 10.96.0.0/24, served by each node's kube-proxy; the ``kubernetes``
  Service's endpoint is the API server's 10.250.0.1. Cluster DNS: ``minidns.py`` (a small stand-in
  for CoreDNS, a thread of the test process) answers on 10.250.0.1:53.
- Lost nodes: ``--node-monitor-grace-period`` and the default not-ready/unreachable tolerations are
  short, so that the pods of a node stopped by ``stop_node()`` are evicted within about 30 s.

Storage: the default StorageClass ``tunecluster-rwx`` is ReadWriteMany on a FUSE network filesystem
(``sharedfs.py``: SFTP served from the host, mounted with sshfs by every node in its own mount
namespace, ``tb.node_mount(name)``), provisioned dynamically by ``tools/sharedfs-provisioner`` (on
sig-storage's external-provisioner library): a folder per claim and a PV whose hostPath is that
folder under the nodes' mount. ``tb.volume_path(pvc)`` is the folder on the server (the host).
The class ``tunecluster-rwo`` is rancher's local-path-provisioner (kind's default): node-local
folders (each node binds its own folder at the same path), WaitForFirstConsumer, PVs with node
affinity, so the pods of a claim land on its node.

Images: nothing is pulled from outside this machine. The bed runs an image registry (the CNCF
distribution registry, ``registry.py``) on https://10.250.0.1:5443 with a certificate from the bed's
CA (every node's containerd trusts it through a ``hosts.toml``) and htpasswd authentication:
``push_image`` uploads an OCI archive (``make_busybox_image`` writes a tiny one from Debian's
busybox-static), ``push_docker_image`` pushes a local Docker image, and pods pull them with the
``imagePullSecret`` that ``pull_secret(namespace)`` creates. Only the pause (sandbox) image is
imported into each node's containerd by hand; ``import_image`` remains for tests of that route.

Node loss: ``stop_node(name)`` kills a node's kubelet, containerd, kube-proxy, kube-router, shims and
every pod process of that node (as a spot instance goes); ``start_node(name)`` brings it back empty.

Run by hand:  python e2e/k8s/testbed.py up [--nodes N]  (prints the kubeconfig; Ctrl-C stops and cleans)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import ipaddress
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
PAUSE_IMAGE = "localhost/tunecluster/pause:3.10"
MIN_FREE_DISK = 3 * 2**30  # images pushed by the tests, pod logs, shared volumes
BUSYBOX_IMAGE = "localhost/tunecluster/busybox:1.35"
STORAGE_CLASS = "tunecluster-rwx"  # the default StorageClass: ReadWriteMany on the shared filesystem
SHAREDFS_PORT = 2222
RWO_CLASS = "tunecluster-rwo"  # rancher's local-path-provisioner: node-local volumes pinned to their node
LOCAL_PATH_NS = "local-path-storage"
LOCK_FILE = "/run/tunecluster-k8s-testbed.lock"
HOST_BRIDGE = "tcnodes"
HOST_NET = ipaddress.ip_network("10.250.0.0/24")
HOST_IP = "10.250.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
NODE_PREFIX = "tc-node-"
KUBELET_PORT = 10250
PROXY_HEALTHZ_PORT = 10256
# kube-router's health port (its default), on each node's own address.
KUBE_ROUTER_HEALTH_PORT = 20244
REGISTRY_PORT = 5443
PULL_SECRET = "registry-credentials"
# Marks the host's iptables rules the bed adds (removed by stop() or by the next bed's clean-up).
RULE_COMMENT = "tunecluster-testbed"
# The host's kernel settings as they were before the first test bed touched them; kept until a
# stop() has put them back, so that a run after a killed one restores the real originals.
SYSCTL_FILE = "/run/tunecluster-k8s-testbed.sysctls.json"
# Kernel settings that the kubelet (and kube-proxy) change on the host; restored by stop().
TOUCHED_SYSCTLS = [
    "vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
]


class TestBedError(RuntimeError):
    pass


def build(quiet: bool = False) -> Path:
    """Run build.sh (cached) and return the folder with the binaries."""
    proc = subprocess.run(["bash", str(HERE / "build.sh")], stdout=subprocess.PIPE,
                          stderr=None if not quiet else subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise TestBedError(f"e2e/k8s/build.sh failed (exit {proc.returncode})"
                           + (f":\n{proc.stderr[-4000:]}" if quiet and proc.stderr else ""))
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, check=True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    proc = subprocess.run([str(c) for c in cmd], **kw)
    if check and proc.returncode != 0:
        raise TestBedError(f"{' '.join(map(str, cmd))} -> exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _go_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


# ------------------------------------------------------------------ images
def write_oci_image(out: Path, ref: str, entries: list[tuple], entrypoint: list[str] | None = None,
                    cmd: list[str] | None = None, env: list[str] | None = None) -> Path:
    """Write a one-layer OCI image archive that ``ctr images import`` accepts.

    ``entries``: (path, "file", bytes, mode) | (path, "dir") | (path, "symlink", target)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(entry[0].lstrip("/"))
            info.mtime = 0
            if entry[1] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif entry[1] == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry[2], 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(entry[2]), entry[3]
                tar.addfile(info, io.BytesIO(entry[2]))
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    layer_digest, layer_size = blob(layer.getvalue())
    config = {
        "architecture": _go_arch(), "os": "linux",
        "config": {"Env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   **({"Entrypoint": entrypoint} if entrypoint else {}), **({"Cmd": cmd} if cmd else {})},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_digest, config_size = blob(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = blob(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
        "platform": {"architecture": _go_arch(), "os": "linux"},
        "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]},
    }]}
    with tarfile.open(out, "w") as tar:
        def add(name: str, data: bytes):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    return out


def make_busybox_image(out: Path, ref: str = BUSYBOX_IMAGE, busybox: str = "/bin/busybox") -> Path:
    """A ~2 MB image: Debian's static busybox with a symlink per applet (sh, wget, httpd, nc...)."""
    if not Path(busybox).exists():
        raise TestBedError(f"{busybox} missing: apt-get install busybox-static")
    applets = _run([busybox, "--list"]).stdout.split()
    entries: list[tuple] = [("bin", "dir"), ("tmp", "dir"), ("etc", "dir"), ("var", "dir"), ("root", "dir"),
                            ("bin/busybox", "file", Path(busybox).read_bytes(), 0o755),
                            ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644),
                            ("etc/group", "file", b"root:x:0:\nnogroup:x:65534:\n", 0o644)]
    entries += [(f"bin/{a}", "symlink", "busybox") for a in applets if a not in ("busybox",) and "/" not in a]
    return write_oci_image(out, ref, entries, cmd=["sh"])


# ------------------------------------------------------------------ one node
class Node:
    """One worker node: a network namespace + a mount namespace (held by an anchor process) with
    its own containerd, kubelet and kube-proxy. Its files live under ``bed.dir/nodes/<name>``."""

    def __init__(self, bed: "TestBed", index: int):
        self.bed = bed
        self.index = index
        self.name = f"{NODE_PREFIX}{chr(ord('a') + index)}"
        self.ip = str(HOST_NET.network_address + 2 + index)
        self.pod_net = ipaddress.ip_network(f"10.244.{index + 1}.0/24")
        self.gateway = str(self.pod_net.network_address + 1)
        self.dir = bed.dir / "nodes" / self.name
        self.netns = self.name
        self.veth = f"tcv-{chr(ord('a') + index)}"
        self.cgroup_root = f"/{self.name}"
        self.containerd_sock = self.dir / "containerd" / "containerd.sock"
        self.anchor: subprocess.Popen | None = None
        self.procs: dict[str, subprocess.Popen] = {}

    def __repr__(self) -> str:
        return f"Node({self.name}, {self.ip}, pods {self.pod_net})"

    # ---------------------------------------------------------- namespaces
    def create_network(self, peers: list["Node"]):
        """The netns, its veth into the host bridge, and host-gw routes to every other node's pods."""
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns])
        _run(["ip", "link", "set", self.veth, "master", HOST_BRIDGE, "up"])
        ns = ["ip", "netns", "exec", self.netns]
        _run([*ns, "ip", "addr", "add", f"{self.ip}/{HOST_NET.prefixlen}", "dev", "eth0"])
        _run([*ns, "ip", "link", "set", "eth0", "up"])
        _run([*ns, "ip", "link", "set", "lo", "up"])
        _run([*ns, "ip", "route", "add", "default", "via", HOST_IP])
        for peer in peers:
            if peer is not self:
                _run([*ns, "ip", "route", "add", str(peer.pod_net), "via", peer.ip])
        _run(["ip", "route", "replace", str(self.pod_net), "via", self.ip, "dev", HOST_BRIDGE])
        for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
            _run([*ns, "sh", "-c", f"echo 1 > /proc/sys/{key}"])

    def start_anchor(self):
        """A process that holds the node's mount namespace (slave of the host's: it sees the host's
        folders, and its own mounts stay its own) inside the node's network namespace."""
        self.dir.mkdir(parents=True, exist_ok=True)
        own = os.readlink("/proc/self/ns/mnt")
        self.anchor = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.netns}", "--", "unshare", "--mount", "--propagation", "slave",
             "--", "sleep", "infinity"], stdin=subprocess.DEVNULL, start_new_session=True)
        pid = self.anchor.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/ns/mnt") != own and Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                    return
            if self.anchor.poll() is not None:
                break
            time.sleep(0.05)
        raise TestBedError(f"node {self.name}: its namespace holder did not start")

    def enter(self) -> list[str]:
        """The command prefix that runs a program inside this node (its network and mount namespaces)."""
        return ["nsenter", "-t", str(self.anchor.pid), "-n", "-m", "--"]

    def exec(self, *cmd, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run([*self.enter(), *cmd], check=check, timeout=timeout)

    def start_proc(self, name: str, cmd: list, env: dict | None = None) -> subprocess.Popen:
        log = open(self.bed.logs / f"{self.name}-{name}.log", "ab")
        proc = subprocess.Popen([*self.enter(), *[str(c) for c in cmd]], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir,
                                env={**os.environ, **(env or {})})
        log.close()
        self.procs[name] = proc
        return proc

    def make_cgroups(self):
        """cgroupRoot /<node> in every v1 hierarchy (the kubelet checks that it exists)."""
        for ctrl in _cgroup_hierarchies():
            path = ctrl / self.cgroup_root.lstrip("/")
            path.mkdir(exist_ok=True)
            if ctrl.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    with contextlib.suppress(OSError):
                        (path / f).write_text((ctrl / f).read_text())

    # ---------------------------------------------------------- node components
    def ctr(self, *args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run(["ctr", "--address", self.containerd_sock, "--namespace", "k8s.io", *args],
                    check=check, timeout=timeout)

    def start_containerd(self):
        d = self.dir / "containerd"
        cni_conf = self.dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (d / "root").mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-tunecluster.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "tunecluster-testbed",
            "plugins": [
                # No ipMasq: pods keep their own address across nodes (host-gw routes carry it).
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(self.dir / "cni" / "ipam"),
                          "ranges": [[{"subnet": str(self.pod_net), "gateway": self.gateway}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "firewall", "backend": "iptables"},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=1))
        certs_d = self.dir / "certs.d"
        certs_d.mkdir(exist_ok=True)
        (d / "config.toml").write_text(f"""version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.containerd_sock}"
[ttrpc]
  address = "{d / 'containerd.sock.ttrpc'}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # No CAP_SYS_RESOURCE on these machines: a negative oom_score_adj (pod sandboxes get -998,
  # Guaranteed pods -997) fails with "nsexec: failed to update /proc/self/oom_score_adj:
  # Permission denied"; clamp it to containerd's own value instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{os.environ.get('TUNECLUSTER_K8S_RUNC') or shutil.which('runc')}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs_d}"
""")
        # The node trusts the bed's CA system-wide, as a real node with the CA installed does: the
        # registry's hosts.toml names it too, but containerd 1.6 falls back to the plain server
        # (without that CA) after a "not found", which would then read as an x509 error.
        bundle = self.dir / "ca-bundle.crt"
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        bundle.write_bytes((system.read_bytes() if system.exists() else b"") + (self.bed.pki / "ca.crt").read_bytes())
        self.start_proc("containerd", ["containerd", "--config", d / "config.toml", "--log-level", "info"],
                        env={"SSL_CERT_FILE": str(bundle)})
        self.bed.wait_for(f"{self.name}: containerd socket", lambda: self.ctr("version", check=False).returncode == 0,
                          60, log=f"{self.name}-containerd")
        self.ctr("images", "import", str(self.bed.pause_archive()))

    def start_kubelet(self):
        p = self.bed.pki
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": self.ip, "port": KUBELET_PORT, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "tlsCertFile": str(p / f"{self.name}-server.crt"), "tlsPrivateKeyFile": str(p / f"{self.name}-server.key"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(p / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs", "cgroupRoot": self.cgroup_root, "cgroupsPerQOS": True,
            "failSwapOn": False, "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
            "resolvConf": "/etc/resolv.conf", "clusterDomain": "cluster.local", "clusterDNS": [HOST_IP],
            # No disk-based eviction and no image garbage collection: the nodes share the host's
            # disk, whose free space is not the bed's to manage. Under DiskPressure the kubelet
            # deletes every unused image, the imported pause image among them (containerd 1.6 does
            # not pin it), and no pod starts on that node again (CI saw exactly this on a machine
            # with little free disk; kubelet ignores a "0%" threshold, as kind configures it).
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%", "imagefs.available": "0%",
                             "nodefs.inodesFree": "0%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "maxPods": 50, "rotateCertificates": False,
            "podLogsDir": str(self.dir / "pod-logs"), "registerNode": True,
            "nodeStatusUpdateFrequency": "4s", "nodeStatusReportFrequency": "10s", "nodeLeaseDurationSeconds": 20,
            "syncFrequency": "10s", "fileCheckFrequency": "10s", "volumeStatsAggPeriod": "0s",
            "shutdownGracePeriod": "0s",
        }
        (self.dir / "kubelet.yaml").write_text(json.dumps(cfg, indent=1))
        self.start_proc("kubelet", [
            self.bed.bin / "kubelet", f"--config={self.dir / 'kubelet.yaml'}",
            f"--kubeconfig={self.bed.dir / f'{self.name}.kubeconfig'}", f"--root-dir={self.dir / 'kubelet'}",
            f"--hostname-override={self.name}", f"--node-ip={self.ip}",
            f"--pod-infra-container-image={PAUSE_IMAGE}", "--v=1",
        ])

    def ready(self) -> bool:
        node = self.bed.kubectl_json("get", "node", self.name)
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])

    def start_kube_proxy(self):
        cfg = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.bed.dir / "kube-proxy.kubeconfig")},
            "mode": "iptables", "clusterCIDR": CLUSTER_CIDR, "hostnameOverride": self.name,
            "bindAddress": self.ip,
            "healthzBindAddress": f"{self.ip}:{PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": "127.0.0.1:10249",
            "conntrack": {"maxPerCore": 0, "min": 0},
            "iptables": {"localhostNodePorts": False},
            "nodePortAddresses": [f"{self.ip}/32"],
        }
        (self.dir / "kube-proxy.yaml").write_text(json.dumps(cfg, indent=1))
        self.start_proc("kube-proxy", [self.bed.bin / "kube-proxy", f"--config={self.dir / 'kube-proxy.yaml'}", "--v=1"])

    def proxy_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://{self.ip}:{PROXY_HEALTHZ_PORT}/healthz", timeout=3) as r:
            return r.status == 200

    def start_network_policy(self):
        """kube-router's network policy controller alone (no routing, no service proxy), as a host
        process entered into this node's namespaces: it watches pods, namespaces and NetworkPolicy
        objects and programs this node's iptables (chains KUBE-ROUTER-*, KUBE-POD-FW-*,
        KUBE-NWPLCY-*) and ipsets. Needs the node registered (it reads the node's InternalIP)."""
        self.start_proc("kube-router", [
            self.bed.bin / "kube-router", f"--kubeconfig={self.bed.kubeconfig}",
            f"--hostname-override={self.name}",
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
            f"--service-cluster-ip-range={self.bed.service_net}",
            f"--health-port={KUBE_ROUTER_HEALTH_PORT}", "--metrics-port=0", "--v=1",
        ])

    def network_policy_synced(self) -> bool:
        """kube-router has finished a full sync on this node: its FORWARD chain ends with the rule
        that accepts what the policies let through (written by the sync's iptables-restore) and the
        jump to it is the first rule of FORWARD."""
        chain = self.exec("iptables", "-w", "-S", "KUBE-ROUTER-FORWARD", check=False).stdout
        forward = self.exec("iptables", "-w", "-S", "FORWARD", check=False).stdout.splitlines()
        first = next((line for line in forward if line.startswith("-A ")), "")
        return "0x20000/0x20000" in chain and first.endswith("-j KUBE-ROUTER-FORWARD")

    def network_policy_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://{self.ip}:{KUBE_ROUTER_HEALTH_PORT}/healthz", timeout=3) as r:
            return r.status == 200

    # ---------------------------------------------------------- stop
    def kill_everything(self):
        """SIGKILL every process of this node: its kubelet, containerd, kube-proxy and shims (they name
        the node's folder on their command line), its pods' processes (they live in the node's
        cgroup) and the namespace holder. What a machine that vanishes does to its programs."""
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                proc.kill()
        marker = str(self.dir) + "/"
        cgroup = f":{self.cgroup_root}/"
        for _ in range(3):
            for pid in _pids():
                cmdline, groups = _proc_cmdline(pid), _proc_cgroups(pid)
                if marker in cmdline or cgroup in groups:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.procs = {}
        if self.anchor:
            self.anchor.kill()
            self.anchor.wait(10)
            self.anchor = None

    def remove_cgroups(self):
        for ctrl in _cgroup_hierarchies():
            _rmdir_tree(ctrl / self.cgroup_root.lstrip("/"))

    def remove_network(self):
        _run(["ip", "netns", "del", self.netns], check=False)
        _run(["ip", "link", "del", self.veth], check=False)


def _cgroup_hierarchies() -> list[Path]:
    return [d for d in Path("/sys/fs/cgroup").iterdir() if d.is_dir() and not d.is_symlink()]


def _rmdir_tree(root: Path):
    """Remove an (empty of processes) cgroup folder and its children, deepest first."""
    if not root.is_dir():
        return
    for sub in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def _pids() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _proc_cgroups(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""


# ------------------------------------------------------------------ the test bed
class TestBed:
    def __init__(self, bin_dir: Path, nodes: int = 2, service_cidr: str = "10.96.0.0/24",
                 workdir: Path | None = None):
        if not 1 <= nodes <= 26:
            raise TestBedError(f"nodes must be 1..26, not {nodes}")
        self.bin = Path(bin_dir)
        self.service_net = ipaddress.ip_network(service_cidr)
        self.api_service_ip = str(self.service_net.network_address + 1)
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="tunecluster-k8s-", dir="/var/tmp"))
        self.logs = self.dir / "logs"
        self.pki = self.dir / "pki"
        self.kubeconfig = self.dir / "admin.kubeconfig"
        self.nodes = [Node(self, i) for i in range(nodes)]
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {n: free_port() for n in ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler")}
        self.timings: dict[str, float] = {}
        self._lock_fd = None
        self._host_rules: list[tuple[str, list[str]]] = []
        self._sysctls: dict[str, str] = {}
        self._netns_before: set[str] = set()
        self.dns = None
        self.registry = None
        self.sharedfs = None
        self.shared_mount = self.dir / "shared"  # where every node mounts the shared filesystem
        self.local_path = self.dir / "local-path"  # every node binds its own folder here
        self.busybox_ref = ""  # the busybox image in the registry (local-path-provisioner's helper pods)

    # The first node, for callers written for the single-node bed.
    @property
    def node_name(self) -> str:
        return self.nodes[0].name

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def api_url(self) -> str:
        return f"https://{HOST_IP}:{self.ports['apiserver']}"

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise TestBedError(f"no node {name!r} (nodes: {', '.join(self.node_names)})")

    # ---------------------------------------------------------- helpers
    def kubectl(self, *args, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return _run([self.bin / "kubectl", "--kubeconfig", self.kubeconfig, *args], check=check,
                    input=input, timeout=timeout)

    def kubectl_json(self, *args) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, manifest: dict | list | str, namespace: str | None = None) -> str:
        if not isinstance(manifest, str):
            items = manifest if isinstance(manifest, list) else [manifest]
            manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=manifest).stdout

    def ctr(self, *args, node: str | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """`ctr` against one node's containerd (the first node unless named)."""
        return self.node(node or self.node_name).ctr(*args, check=check, timeout=timeout)

    def import_image(self, tarball: Path | str, timeout: float = 1200) -> str:
        """Load a docker-save or OCI image archive into every running node's containerd (namespace
        k8s.io, where the kubelet's CRI sees it); returns ctr's output of the first node, which names
        the imported images. Docker names are normalized: `tunecluster:0.1.0` becomes
        `docker.io/library/tunecluster:0.1.0`, which a pod spec may still write as
        `tunecluster:0.1.0` (use imagePullPolicy Never/IfNotPresent)."""
        outputs = [n.ctr("images", "import", str(tarball), timeout=timeout).stdout for n in self.nodes if n.anchor]
        return outputs[0] if outputs else ""

    def import_docker_image(self, name: str, timeout: float = 1200) -> str:
        """`docker save NAME` from the local Docker daemon, then import_image."""
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            archive = Path(tmp) / "image.tar"
            _run(["docker", "save", "-o", archive, name], timeout=timeout)
            return self.import_image(archive, timeout=timeout)

    def images(self, node: str | None = None) -> list[str]:
        """Images in one node's containerd, or (no node named) those that every running node has."""
        if node:
            return self.node(node).ctr("images", "ls", "-q").stdout.split()
        sets = [set(n.ctr("images", "ls", "-q").stdout.split()) for n in self.nodes if n.anchor]
        return sorted(set.intersection(*sets)) if sets else []

    def pause_archive(self) -> Path:
        path = self.dir / "pause.tar"
        if not path.exists():
            write_oci_image(path, PAUSE_IMAGE, [("pause", "file", (self.bin / "pause").read_bytes(), 0o755)],
                            entrypoint=["/pause"])
        return path

    def volume_path(self, pvc: str, namespace: str = "default") -> Path:
        """Host folder of the volume bound to a claim: for the shared filesystem's volumes, their
        folder on the filesystem's server (what every node's mount shows)."""
        volume = self.kubectl_json("get", "pvc", pvc, "-n", namespace)["spec"].get("volumeName")
        if not volume:
            raise TestBedError(f"claim {namespace}/{pvc} is not bound")
        pv = self.kubectl_json("get", "pv", volume)
        export = pv["metadata"].get("annotations", {}).get("tunecluster.local/export")
        path = Path(export or (pv["spec"].get("hostPath") or pv["spec"].get("local"))["path"])
        if self.local_path in path.parents:  # a node-local volume: that node's own folder
            terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
            node = terms[0]["matchExpressions"][0]["values"][0]
            return self.node(node).dir / "local-path" / path.relative_to(self.local_path)
        return path

    def wait_for(self, what: str, cond, timeout: float = 120, interval: float = 0.5, log: str | None = None):
        deadline = time.monotonic() + timeout
        last_exc = None
        while time.monotonic() < deadline:
            try:
                value = cond()
                if value:
                    return value
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last_exc = exc
            for name, proc in self._all_procs():
                if proc.poll() is not None:
                    raise TestBedError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n"
                                       + _tail(self.logs / f"{name}.log"))
            time.sleep(interval)
        msg = f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
        if log:
            msg += f"\n--- tail of {log}.log ---\n" + _tail(self.logs / f"{log}.log", 60)
        raise TestBedError(msg + "\n" + self.diagnose())

    def _all_procs(self):
        yield from self.procs.items()
        for n in self.nodes:
            yield from ((f"{n.name}-{k}", v) for k, v in n.procs.items())

    def diagnose(self) -> str:
        """Free disk, node conditions, pods and recent events, for failure messages."""
        out = [f"free disk under {self.dir.parent}: {shutil.disk_usage(self.dir.parent).free / 2**30:.1f} GiB"]
        with contextlib.suppress(Exception):
            for node in self.kubectl_json("get", "nodes")["items"]:
                bad = [("not " if c["type"] == "Ready" else "") + c["type"] for c in node["status"]["conditions"]
                       if (c["type"] == "Ready") != (c["status"] == "True")]
                out.append(f"node {node['metadata']['name']}: " + (", ".join(bad) if bad else "Ready, no pressure"))
        with contextlib.suppress(Exception):
            out.append(self.kubectl("get", "pods,pvc,pv,svc,jobs", "-A", "-o", "wide", check=False, timeout=20).stdout)
            out.append(self.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", check=False,
                                    timeout=20).stdout.splitlines()[-25:].__str__().replace("', '", "\n"))
        with contextlib.suppress(Exception):
            for pod in self.kubectl_json("get", "pods", "-A")["items"]:
                if pod["status"].get("phase") == "Failed":
                    meta = pod["metadata"]
                    logs = self.kubectl("logs", "-n", meta["namespace"], meta["name"], "--tail=15", check=False,
                                        timeout=20)
                    out.append(f"--- logs of failed pod {meta['namespace']}/{meta['name']} ---\n{logs.stdout}{logs.stderr}")
        return "--- cluster state ---\n" + "\n".join(out)

    def _start(self, name: str, cmd: list) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir)
        log.close()
        self.procs[name] = proc
        return proc

    def _https_ok(self, port: int, path: str, verify: bool = True, host: str = "127.0.0.1") -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if not verify:  # controller-manager and scheduler serve a self-signed certificate
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        with urllib.request.urlopen(f"https://{host}:{port}{path}", context=ctx, timeout=5) as r:
            return r.status == 200

    # ---------------------------------------------------------- start
    def start(self, ready_timeout: float = 300) -> "TestBed":
        t0 = time.monotonic()
        try:
            self._preflight()
        except TestBedError:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self._step("certs", self._make_pki)
            self._step("host network", self._setup_host_network)
            self._step("etcd", self._start_etcd)
            self._step("kube-apiserver", self._start_apiserver)
            self._step("controller-manager and scheduler", self._start_controllers)
            self._step("cluster DNS", self._start_dns)
            self._step("image registry", self._start_registry)
            self._step("shared filesystem server", self._start_sharedfs)
            self._step("nodes (containerd, kubelet, kube-proxy, kube-router)", lambda: self._start_nodes(ready_timeout))
            self._step("storage and service account", self._setup_cluster_objects)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    def _step(self, name: str, fn):
        t = time.monotonic()
        fn()
        self.timings[name] = time.monotonic() - t

    def _preflight(self):
        if os.geteuid() != 0:
            raise TestBedError("the Kubernetes test bed needs root (kubelet, containerd, iptables)")
        missing = [b for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                               "kube-proxy", "kubectl", "etcd", "pause", "kube-router") if not (self.bin / b).exists()]
        missing += [t for t in ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "openssl", "ip",
                                "nsenter", "unshare", "conntrack", "ipset")
                    if not shutil.which(t)]
        missing += [p for p in ("/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback",
                                "/usr/lib/cni/portmap", "/usr/lib/cni/firewall") if not Path(p).exists()]
        if missing:
            raise TestBedError("missing: " + ", ".join(missing) + " (run e2e/k8s/build.sh; apt-get install "
                               "containerd runc containernetworking-plugins iptables ipset conntrack util-linux busybox-static)")
        free = shutil.disk_usage(self.dir.parent).free
        if free < MIN_FREE_DISK:
            raise TestBedError(f"only {free / 2**30:.1f} GiB free under {self.dir.parent}: the bed's nodes, images and "
                               f"shared volumes need at least {MIN_FREE_DISK / 2**30:.0f} GiB (free some disk space)")
        self._lock_fd = open(LOCK_FILE, "w")
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TestBedError(f"another Kubernetes test bed runs on this machine ({LOCK_FILE} is locked)") from None
        self._clean_stale_runs()

    def _clean_stale_runs(self):
        """With the lock held no other test bed is alive: end the processes of a run that was
        killed before its stop() (they name its folder on their command line, or live in a node's
        cgroup or network namespace), remove its folder, its nodes' namespaces, cgroups and links
        and its host iptables rules, so that two kubelets/kube-proxies never fight over this machine."""
        parent = self.dir.parent
        stale = [d for d in parent.glob("tunecluster-k8s-*") if d != self.dir and (d / "logs").is_dir()]
        markers = [str(d) + "/" for d in stale]
        cgroup_marker = f":/{NODE_PREFIX}"
        for pid in _pids():
            if any(m in _proc_cmdline(pid) for m in markers) or cgroup_marker in _proc_cgroups(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if os.path.isdir("/var/run/netns"):
            for ns in os.listdir("/var/run/netns"):
                if ns.startswith(NODE_PREFIX):
                    self._kill_netns_holders(ns)
                    _run(["ip", "netns", "del", ns], check=False)
        if stale:
            time.sleep(1)
        for d in stale:
            self._unmount_under(d)
            if os.environ.get("TUNECLUSTER_K8S_KEEP") != "1":
                shutil.rmtree(d, ignore_errors=True)
        for line in _run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith("tcv-"):
                _run(["ip", "link", "del", name], check=False)
        _run(["ip", "link", "del", HOST_BRIDGE], check=False)
        shutil.rmtree(f"/etc/docker/certs.d/{HOST_IP}:{REGISTRY_PORT}", ignore_errors=True)
        for ctrl in _cgroup_hierarchies():
            for root in ctrl.glob(f"{NODE_PREFIX}*"):
                _rmdir_tree(root)
        # Host iptables rules a killed run left (they carry our comment).
        for table, chain in (("nat", "PREROUTING"), ("filter", "FORWARD")):
            for line in _run(["iptables", "-t", table, "-S", chain], check=False).stdout.splitlines():
                if RULE_COMMENT in line and line.startswith("-A "):
                    _run(["iptables", "-t", table, "-D", *shlex.split(line)[1:]], check=False)

    @staticmethod
    def _kill_netns_holders(ns: str):
        """SIGKILL the processes that live in the network namespace /var/run/netns/NS."""
        try:
            target = os.stat(f"/var/run/netns/{ns}")
        except OSError:
            return
        for pid in _pids():
            try:
                st = os.stat(f"/proc/{pid}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    # ---------------------------------------------------------- pki
    def _make_pki(self):
        p = self.pki
        p.mkdir(parents=True)

        def ossl(*args):
            _run(["openssl", *args], cwd=p)

        def key(name):
            ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")

        key("ca")
        ossl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=tunecluster-testbed-ca", "-days", "30",
             "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")

        def cert(name, subj, sans=None, server=False):
            key(name)
            ext = p / f"{name}.ext"
            lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                     "extendedKeyUsage=" + ("serverAuth" if server else "clientAuth")]
            if sans:
                lines.append("subjectAltName=" + ",".join(sans))
            ext.write_text("\n".join(lines) + "\n")
            ossl("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out", f"{name}.csr")
            ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "30", "-extfile", ext.name, "-out", f"{name}.crt")

        cert("apiserver", "/CN=kube-apiserver", server=True, sans=[
            "IP:127.0.0.1", f"IP:{self.api_service_ip}", f"IP:{HOST_IP}", "DNS:localhost", "DNS:kubernetes",
            "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"])
        for n in self.nodes:
            cert(f"{n.name}-server", f"/CN={n.name}", server=True, sans=[f"IP:{n.ip}", f"DNS:{n.name}"])
            cert(n.name, f"/O=system:nodes/CN=system:node:{n.name}")
        cert("registry", "/CN=tunecluster-testbed-registry", server=True, sans=[f"IP:{HOST_IP}"])
        cert("admin", "/O=system:masters/CN=tunecluster-admin")
        cert("apiserver-kubelet-client", "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client")
        cert("controller-manager", "/CN=system:kube-controller-manager")
        cert("scheduler", "/CN=system:kube-scheduler")
        cert("kube-proxy", "/CN=system:kube-proxy")
        # Service-account token signing key (ES256).
        key("sa")
        ossl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        server = self.api_url
        for name in ("admin", "controller-manager", "scheduler", "kube-proxy", *self.node_names):
            kc = {
                "apiVersion": "v1", "kind": "Config", "current-context": "testbed",
                "clusters": [{"name": "testbed", "cluster": {"server": server, "certificate-authority": str(p / "ca.crt")}}],
                "users": [{"name": name, "user": {"client-certificate": str(p / f"{name}.crt"),
                                                  "client-key": str(p / f"{name}.key")}}],
                "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": name}}],
            }
            (self.dir / f"{name}.kubeconfig").write_text(json.dumps(kc, indent=1))

    # ---------------------------------------------------------- host network
    def _sysctl(self, key: str, value: str):
        path = Path("/proc/sys") / key.replace(".", "/")
        if key not in self._sysctls and path.exists():
            self._sysctls[key] = path.read_text().strip()
        path.write_text(value)

    def _setup_host_network(self):
        saved = Path(SYSCTL_FILE)
        if saved.exists():  # a killed run's kubelet changed them: its saved originals are the real ones
            with contextlib.suppress(ValueError, OSError):
                self._sysctls.update(json.loads(saved.read_text()))
        for key in TOUCHED_SYSCTLS:
            path = Path("/proc/sys") / key.replace(".", "/")
            if path.exists():
                self._sysctls.setdefault(key, path.read_text().strip())
        saved.write_text(json.dumps(self._sysctls))
        self._netns_before = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
        _run(["ip", "link", "add", HOST_BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{HOST_IP}/{HOST_NET.prefixlen}", "dev", HOST_BRIDGE])
        _run(["ip", "link", "set", HOST_BRIDGE, "up"])
        self._sysctl("net.ipv4.ip_forward", "1")
        # Docker sets the host's FORWARD policy to DROP, and with br_netfilter even frames between two
        # ports of one bridge pass that chain: accept the nodes' traffic.
        for rule in (["-i", HOST_BRIDGE], ["-o", HOST_BRIDGE]):
            full = ["FORWARD", *rule, "-m", "comment", "--comment", RULE_COMMENT, "-j", "ACCEPT"]
            _run(["iptables", "-t", "filter", "-I", *full])
            self._host_rules.append(("filter", full))
        for n in self.nodes:
            n.create_network(self.nodes)

    # ---------------------------------------------------------- control plane
    def _start_etcd(self):
        c, peer = self.ports["etcd"], self.ports["etcd_peer"]
        self._start("etcd", [self.bin / "etcd", "--name", "testbed", "--data-dir", self.dir / "etcd",
                             "--listen-client-urls", f"http://127.0.0.1:{c}", "--advertise-client-urls", f"http://127.0.0.1:{c}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-cluster", f"testbed=http://127.0.0.1:{peer}",
                             "--listen-metrics-urls", "", "--unsafe-no-fsync", "--quota-backend-bytes", str(2 << 30),
                             "--log-level", "warn"])

        def healthy():
            with urllib.request.urlopen(f"http://127.0.0.1:{c}/health", timeout=3) as r:
                return json.load(r).get("health") == "true"
        self.wait_for("etcd /health", healthy, 60, log="etcd")

    def _start_apiserver(self):
        p = self.pki
        self._start("kube-apiserver", [
            self.bin / "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            f"--bind-address={HOST_IP}", f"--secure-port={self.ports['apiserver']}",
            f"--advertise-address={HOST_IP}",
            # A lost node's pods are evicted 10 s after it turns NotReady/Unreachable (default 300 s).
            "--default-not-ready-toleration-seconds=10", "--default-unreachable-toleration-seconds=10",
            f"--service-cluster-ip-range={self.service_net}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={p / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ])
        self.wait_for("kube-apiserver /readyz", lambda: self._https_ok(self.ports["apiserver"], "/readyz", host=HOST_IP),
                      120, log="kube-apiserver")
        # The built-in RBAC roles exist once /readyz is green; the apiserver->kubelet identity needs
        # the kubelet API (logs, exec): kubeadm binds its group the same way.
        self.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": "testbed:apiserver-kubelet-client"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "system:kubelet-api-admin"},
                    "subjects": [{"kind": "User", "name": "kube-apiserver-kubelet-client",
                                  "apiGroup": "rbac.authorization.k8s.io"}]})

    def _start_controllers(self):
        p = self.pki
        self._start("kube-controller-manager", [
            self.bin / "kube-controller-manager",
            f"--kubeconfig={self.dir / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={self.dir / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={self.dir / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['kcm']}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}", f"--cluster-signing-key-file={p / 'ca.key'}",
            f"--service-cluster-ip-range={self.service_net}",
            # A node that stops reporting is NotReady after 20 s (default 40 s).
            "--node-monitor-period=2s", "--node-monitor-grace-period=20s",
            "--controllers=*", "--v=1",
        ])
        self._start("kube-scheduler", [
            self.bin / "kube-scheduler",
            f"--kubeconfig={self.dir / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={self.dir / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={self.dir / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}",
            "--leader-elect=false", "--v=1",
        ])
        self.wait_for("kube-controller-manager /healthz", lambda: self._https_ok(self.ports["kcm"], "/healthz", False),
                      90, log="kube-controller-manager")
        self.wait_for("kube-scheduler /healthz", lambda: self._https_ok(self.ports["scheduler"], "/healthz", False),
                      90, log="kube-scheduler")

    def _start_dns(self):
        from minidns import ClusterDNS  # noqa: PLC0415 - beside this file
        p = self.pki
        self.dns = ClusterDNS(HOST_IP, self.api_url, p / "ca.crt",
                              p / "admin.crt", p / "admin.key").start()

    def _start_registry(self):
        from registry import Registry  # noqa: PLC0415 - beside this file
        p = self.pki
        self.registry = Registry(self.bin, self.dir / "registry", p / "ca.crt", p / "registry.crt", p / "registry.key",
                                 HOST_IP, REGISTRY_PORT).start(self.logs / "registry.log")
        self.procs["registry"] = self.registry.proc
        self.wait_for("registry /v2/ (401 without, 200 with credentials)", self.registry.ready, 60, log="registry")

    def _start_sharedfs(self):
        from sharedfs import SftpServer  # noqa: PLC0415 - beside this file
        self.sharedfs = SftpServer(self.dir / "sharedfs-export", HOST_IP, SHAREDFS_PORT).start()
        self.shared_mount.mkdir(exist_ok=True)

    def _mount_sharedfs(self, n: Node):
        n.start_proc("sshfs", self.sharedfs.mount_command(self.shared_mount))
        self.wait_for(f"{n.name}: the shared filesystem mounted", lambda: self.node_mount(n.name), 30,
                      log=f"{n.name}-sshfs")

    def node_mount(self, name: str) -> str:
        """The line of /proc/mounts, inside a node's mount namespace, of its shared filesystem mount."""
        n = self.node(name)
        mounts = Path(f"/proc/{n.anchor.pid}/mounts").read_text() if n.anchor else ""
        return next((line for line in mounts.splitlines() if f" {self.shared_mount} fuse" in line), "")

    def push_image(self, archive: Path, repository: str, tag: str) -> str:
        """Push an OCI archive (``write_oci_image``/``make_busybox_image``) to the bed's registry;
        returns the reference pods pull (with the pull secret, see ``pull_secret``)."""
        return self.registry.push_oci_archive(archive, repository, tag)

    def push_docker_image(self, image: str, repository: str | None = None, tag: str | None = None) -> str:
        """`docker push` a local Docker image to the bed's registry; returns the reference pods pull."""
        return self.registry.push_docker_image(image, repository, tag)

    def pull_secret(self, namespace: str, name: str = PULL_SECRET, default_service_account: bool = False) -> str:
        """Create the registry's kubernetes.io/dockerconfigjson Secret in a namespace (and, if asked,
        list it in the namespace's `default` ServiceAccount's imagePullSecrets, which Kubernetes then
        adds to every pod of that account); returns its name."""
        self.apply(self.registry.pull_secret(name, namespace))
        if default_service_account:
            self.wait_for(f"service account {namespace}/default", lambda: self.kubectl(
                "get", "sa", "default", "-n", namespace, check=False).returncode == 0, 60)
            self.kubectl("patch", "serviceaccount", "default", "-n", namespace, "--type=merge", "-p",
                         json.dumps({"imagePullSecrets": [{"name": name}]}))
        return name

    # ---------------------------------------------------------- nodes
    def _start_nodes(self, ready_timeout: float):
        for n in self.nodes:
            self._start_node_processes(n)
        for n in self.nodes:
            self.wait_for(f"node {n.name} Ready", n.ready, ready_timeout, interval=1, log=f"{n.name}-kubelet")
        for n in self.nodes:
            self.wait_for(f"{n.name}: kube-proxy /healthz", n.proxy_healthy, 60, log=f"{n.name}-kube-proxy")
        for n in self.nodes:
            n.start_network_policy()
        for n in self.nodes:
            self._wait_network_policy(n)

    def _wait_network_policy(self, n: Node):
        self.wait_for(f"{n.name}: kube-router's first network policy sync", n.network_policy_synced, 90,
                      log=f"{n.name}-kube-router")
        self.wait_for(f"{n.name}: kube-router /healthz", n.network_policy_healthy, 30, log=f"{n.name}-kube-router")

    def _start_node_processes(self, n: Node):
        n.start_anchor()
        n.make_cgroups()
        if self.registry:
            self.registry.write_containerd_hosts(n.dir / "certs.d")
        if self.sharedfs:
            self._mount_sharedfs(n)
        # The ReadWriteOnce class's folder: the same path on every node, each node's own disk.
        self.local_path.mkdir(exist_ok=True)
        (n.dir / "local-path").mkdir(exist_ok=True)
        n.exec("mount", "--bind", n.dir / "local-path", self.local_path)
        n.start_containerd()
        n.start_kubelet()
        n.start_kube_proxy()

    def stop_node(self, name: str) -> None:
        """Lose a node as a spot instance goes: SIGKILL its kubelet, containerd, kube-proxy, shims
        and every process of its pods, and drop its mount namespace. Its Node object stays; the
        control plane marks it NotReady (about 20 s) and evicts its pods (10 s later)."""
        n = self.node(name)
        n.kill_everything()
        self._unmount_under(n.dir)

    def start_node(self, name: str, ready_timeout: float = 180) -> None:
        """Bring a stopped node back as a fresh machine with the same name and address: empty
        containerd and kubelet state (the pause image imported again), Ready again."""
        n = self.node(name)
        if n.anchor:
            raise TestBedError(f"node {name} is running; stop_node() it first")
        for sub in ("containerd", "kubelet", "pod-logs", "cni"):
            shutil.rmtree(n.dir / sub, ignore_errors=True)
        n.remove_cgroups()
        self._start_node_processes(n)
        self.wait_for(f"node {name} Ready again", n.ready, ready_timeout, interval=1, log=f"{name}-kubelet")
        self.wait_for(f"{name}: kube-proxy /healthz", n.proxy_healthy, 60, log=f"{name}-kube-proxy")
        n.start_network_policy()
        self._wait_network_policy(n)

    def node_of(self, pod: str, namespace: str = "default") -> str:
        return self.kubectl_json("get", "pod", pod, "-n", namespace)["spec"].get("nodeName", "")

    def _setup_cluster_objects(self):
        self.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": STORAGE_CLASS,
                                 "annotations": {"storageclass.kubernetes.io/is-default-class": "true",
                                                 # (a mark for `tunecluster up`: this provisioner's
                                                 # volumes mount on every node)
                                                 "tunecluster.io/access-modes": "ReadWriteMany,ReadWriteOnce"}},
                    "provisioner": "tunecluster.local/sharedfs", "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate"})
        self._start_local_path_provisioner()
        self._start("sharedfs-provisioner", [
            self.bin / "sharedfs-provisioner", f"--kubeconfig={self.kubeconfig}", "--name=tunecluster.local/sharedfs",
            f"--export-dir={self.sharedfs.root}", f"--mount-dir={self.shared_mount}", "--v=1"])
        self.wait_for("service account default/default",
                      lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0, 60,
                      log="kube-controller-manager")

    def _start_local_path_provisioner(self):
        """rancher/local-path-provisioner out of cluster (as kind runs it in cluster): class
        tunecluster-rwo, WaitForFirstConsumer, a folder under the chosen node's own local-path
        folder made by a helper pod (busybox from the registry, pulled with the pull secret of its
        ServiceAccount), and a PV with node affinity to that node."""
        self.busybox_ref = self.push_image(make_busybox_image(self.dir / "busybox.tar"), "tunecluster/busybox", "1.35")
        sa = "local-path-provisioner-service-account"
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LOCAL_PATH_NS}})
        self.pull_secret(LOCAL_PATH_NS)
        helper_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "helper-pod"}, "spec": {
            "imagePullSecrets": [{"name": PULL_SECRET}],
            "containers": [{"name": "helper-pod", "image": self.busybox_ref, "imagePullPolicy": "IfNotPresent"}]}}
        config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(self.local_path)]}]}
        self.apply([
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": LOCAL_PATH_NS},
             "imagePullSecrets": [{"name": PULL_SECRET}]},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local-path-config", "namespace": LOCAL_PATH_NS},
             "data": {"config.json": json.dumps(config), "helperPod.yaml": json.dumps(helper_pod),
                      "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                      "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n'}},
            {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": RWO_CLASS},
             "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
             "volumeBindingMode": "WaitForFirstConsumer"},
        ])
        lpp = self.dir / "local-path-provisioner"
        lpp.mkdir(exist_ok=True)
        (lpp / "config.json").write_text(json.dumps(config))
        (lpp / "helperPod.yaml").write_text(json.dumps(helper_pod))
        self._start("local-path-provisioner", [
            self.bin / "local-path-provisioner", "start", f"--config={lpp / 'config.json'}",
            "--provisioner-name=rancher.io/local-path", f"--namespace={LOCAL_PATH_NS}",
            f"--helper-image={self.busybox_ref}", f"--kubeconfig={self.kubeconfig}",
            "--configmap-name=local-path-config", f"--service-account-name={sa}",
            f"--helper-pod-file={lpp / 'helperPod.yaml'}"])

    # ---------------------------------------------------------- stop
    def stop(self):
        if any(n.procs.get("kubelet") and n.procs["kubelet"].poll() is None for n in self.nodes):
            # Let the kubelets tear pods down (CNI DEL, unmounts) before they stop.
            with contextlib.suppress(Exception):
                self.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force",
                             "--wait=false", check=False, timeout=30)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and any(
                        n.anchor and n.ctr("tasks", "ls", "-q", check=False).stdout.strip() for n in self.nodes):
                    time.sleep(1)
        if self.dns:
            self.dns.stop()
            self.dns = None
        for n in self.nodes:
            for name in ("kube-router", "kube-proxy", "kubelet"):
                self._stop_proc(name, n.procs)
            if n.procs.get("containerd") and n.procs["containerd"].poll() is None:
                with contextlib.suppress(Exception):
                    for task in n.ctr("tasks", "ls", "-q", check=False).stdout.split():
                        n.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            self._stop_proc("containerd", n.procs)
            n.kill_everything()  # shims, pod processes and the namespace holder
        for name in ("local-path-provisioner", "sharedfs-provisioner", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop_proc(name, self.procs)
        if self.registry:
            self.procs.pop("registry", None)
            self.registry.stop()
        if self.sharedfs:
            self.sharedfs.stop()
            self.sharedfs = None
        for n in self.nodes:
            n.remove_network()
            n.remove_cgroups()
        for table, rule in self._host_rules:
            _run(["iptables", "-t", table, "-D", *rule], check=False)
        self._host_rules = []
        _run(["ip", "link", "del", HOST_BRIDGE], check=False)
        if os.path.isdir("/var/run/netns"):
            for ns in set(os.listdir("/var/run/netns")) - self._netns_before:
                if ns.startswith("cni-"):
                    _run(["ip", "netns", "del", ns], check=False)
        for key, value in self._sysctls.items():
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key.replace(".", "/")).write_text(value)
        if self._sysctls:
            with contextlib.suppress(OSError):
                os.unlink(SYSCTL_FILE)
        self._sysctls = {}
        self._unmount_under(self.dir)
        if os.environ.get("TUNECLUSTER_K8S_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock_fd:
            self._lock_fd.close()
            self._lock_fd = None

    @staticmethod
    def _stop_proc(name: str, procs: dict, timeout: float = 15):
        proc = procs.pop(name, None)
        if not proc or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    @staticmethod
    def _unmount_under(root: Path):
        prefix = str(root) + "/"
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1].encode().decode("unicode_escape") for line in f]
        for mnt in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            _run(["umount", "-l", mnt], check=False)

    def describe(self) -> str:
        version = json.loads(self.kubectl("version", "-o", "json").stdout)
        nodes = self.kubectl_json("get", "nodes")["items"]
        return (f"server {version['serverVersion']['gitVersion']}, client {version['clientVersion']['gitVersion']}, "
                f"node(s): {', '.join(n['metadata']['name'] for n in nodes)}")


@contextlib.contextmanager
def running_testbed(**kw):
    bed = TestBed(build(), **kw)
    bed.start()
    try:
        yield bed
    finally:
        bed.stop()


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("build", "up"):
        print("usage: testbed.py build | up [--nodes N]", file=sys.stderr)
        return 2
    bin_dir = build()
    if argv[1] == "build":
        print(bin_dir)
        return 0
    nodes = int(argv[argv.index("--nodes") + 1]) if "--nodes" in argv else 2
    bed = TestBed(bin_dir, nodes=nodes)
    t = time.monotonic()
    bed.start()
    try:
        # A namespace ready for `tunecluster up -n tc`: the registry's pull secret on its default
        # ServiceAccount; and the local Docker daemon trusts the registry's CA (for `docker push`).
        bed.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tc"}})
        bed.pull_secret("tc", default_service_account=True)
        if shutil.which("docker") and _run(["docker", "info"], check=False).returncode == 0:
            bed.registry.docker_login()
    except BaseException:
        bed.stop()
        raise
    print(f"test bed up in {time.monotonic() - t:.1f}s: {bed.describe()}")
    print(f"  export KUBECONFIG={bed.kubeconfig}   (logs in {bed.logs}); Ctrl-C stops and cleans up")
    print(f"  registry {bed.registry.url}: user {bed.registry.user}, password {bed.registry.password}")
    print(f"    echo {bed.registry.password} | docker login -u {bed.registry.user} --password-stdin {bed.registry.host}")
    print(f"  namespace tc: pods pull with the Secret {PULL_SECRET} (on its default ServiceAccount)")
    for n in bed.nodes:
        print(f"  {n.name} {n.ip}, pods {n.pod_net}; shared filesystem: {bed.node_mount(n.name)}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # (a background job starts with SIGINT ignored)
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            pass
    finally:
        bed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
