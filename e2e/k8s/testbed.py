"""A real single-node Kubernetes for tunecluster's end-to-end tests.

Starts, from the binaries that ``e2e/k8s/build.sh`` builds (one pinned release, see go.mod):
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (Debian's, with runc
and the CNI plugins), a kubelet (cgroupfs driver) and kube-proxy (iptables mode). Everything it
creates lives in one temporary folder and is removed by ``stop()``.

Addresses (all on this machine, nothing leaves it):
- etcd, kube-apiserver, controller-manager, scheduler, kube-proxy's and the kubelet's health ports
  listen on 127.0.0.1; the kubeconfig (``tb.kubeconfig``) points at https://127.0.0.1:<port>.
- Pods live on a host-only bridge (``tcbr0``, 10.244.0.0/24, gateway 10.244.0.1, which is also the
  node's InternalIP and the kubelet's listen address, so that the API server reaches it for
  logs/exec: a kubelet refuses a loopback node IP).
- Services: ClusterIPs in 10.96.0.0/24, served by kube-proxy. Cluster DNS: ``minidns.py`` (a
  small stand-in for CoreDNS, a thread of the test process) answers on 10.244.0.1:53 for
  ``<svc>.<ns>.svc.cluster.local`` and ``<hostname>.<headless-svc>.<ns>.svc.cluster.local``;
  the ``<NAME>_SERVICE_HOST``/``_PORT`` environment variables work too.
- Pods reach the API server at the ``kubernetes`` Service (10.96.0.1:443, the in-cluster config
  env vars), which a NAT rule on the bridge sends to the API server on 127.0.0.1.

Storage: a default StorageClass ``tunecluster-local`` whose claims a small provisioner thread binds
to fresh hostPath PersistentVolumes under the test bed's folder (``tb.volume_path(pvc)``).

Images: nothing can be pulled. ``make_busybox_image`` writes a tiny OCI image from Debian's
busybox-static, ``import_image`` loads any docker-save/OCI tarball into the node's containerd
(namespace k8s.io); use ``imagePullPolicy: Never`` or ``IfNotPresent``.

Run by hand:  python e2e/k8s/testbed.py up   (prints the kubeconfig; Ctrl-C stops and cleans)
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
BUSYBOX_IMAGE = "localhost/tunecluster/busybox:1.35"
STORAGE_CLASS = "tunecluster-local"
LOCK_FILE = "/run/tunecluster-k8s-testbed.lock"
# The host's kernel settings as they were before the first test bed touched them; kept until a
# stop() has put them back, so that a run after a killed one restores the real originals.
SYSCTL_FILE = "/run/tunecluster-k8s-testbed.sysctls.json"
# Kernel settings that the kubelet (and kube-proxy) change on the host; restored by stop().
TOUCHED_SYSCTLS = [
    "vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables", "net.ipv4.conf.all.route_localnet",
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


# ------------------------------------------------------------------ the test bed
class TestBed:
    def __init__(self, bin_dir: Path, node_name: str = "tc-node", pod_cidr: str = "10.244.0.0/24",
                 service_cidr: str = "10.96.0.0/24", bridge: str = "tcbr0", workdir: Path | None = None):
        self.bin = Path(bin_dir)
        self.node_name = node_name
        self.pod_net = ipaddress.ip_network(pod_cidr)
        self.node_ip = str(self.pod_net.network_address + 1)
        self.service_net = ipaddress.ip_network(service_cidr)
        self.api_service_ip = str(self.service_net.network_address + 1)
        self.bridge = bridge
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="tunecluster-k8s-", dir="/var/tmp"))
        self.logs = self.dir / "logs"
        self.pki = self.dir / "pki"
        self.kubeconfig = self.dir / "admin.kubeconfig"
        self.containerd_sock = self.dir / "containerd" / "containerd.sock"
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {n: free_port() for n in ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler", "kubelet",
                                               "kubelet_healthz", "proxy_healthz", "proxy_metrics")}
        self.timings: dict[str, float] = {}
        self._lock_fd = None
        self._nat_rules: list[list[str]] = []
        self._sysctls: dict[str, str] = {}
        self._netns_before: set[str] = set()
        self._stop_provisioner = threading.Event()
        self._provisioner: threading.Thread | None = None
        self.dns = None
        self.provisioner_errors: list[str] = []

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

    def ctr(self, *args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run(["ctr", "--address", self.containerd_sock, "--namespace", "k8s.io", *args],
                    check=check, timeout=timeout)

    def import_image(self, tarball: Path | str, timeout: float = 1200) -> str:
        """Load a docker-save or OCI image archive into the node's containerd (namespace k8s.io, where
        the kubelet's CRI sees it); returns ctr's output, which names the imported images. Docker
        names are normalized: `tunecluster:0.1.0` becomes `docker.io/library/tunecluster:0.1.0`, which
        a pod spec may still write as `tunecluster:0.1.0` (use imagePullPolicy Never/IfNotPresent)."""
        return self.ctr("images", "import", str(tarball), timeout=timeout).stdout

    def import_docker_image(self, name: str, timeout: float = 1200) -> str:
        """`docker save NAME` from the local Docker daemon, then import_image."""
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            archive = Path(tmp) / "image.tar"
            _run(["docker", "save", "-o", archive, name], timeout=timeout)
            return self.import_image(archive, timeout=timeout)

    def images(self) -> list[str]:
        return self.ctr("images", "ls", "-q").stdout.split()

    def volume_path(self, pvc: str, namespace: str = "default") -> Path:
        """Host folder of the hostPath volume bound to a claim (the provisioner makes one per claim)."""
        volume = self.kubectl_json("get", "pvc", pvc, "-n", namespace)["spec"].get("volumeName")
        if not volume:
            raise TestBedError(f"claim {namespace}/{pvc} is not bound")
        return Path(self.kubectl_json("get", "pv", volume)["spec"]["hostPath"]["path"])

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
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise TestBedError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n"
                                       + _tail(self.logs / f"{name}.log"))
            time.sleep(interval)
        msg = f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
        if log:
            msg += f"\n--- tail of {log}.log ---\n" + _tail(self.logs / f"{log}.log", 60)
        raise TestBedError(msg + "\n" + self.diagnose())

    def diagnose(self) -> str:
        """Pods and recent events, for failure messages."""
        out = []
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

    def _https_ok(self, port: int, path: str, verify: bool = True) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if not verify:  # controller-manager and scheduler serve a self-signed certificate
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=5) as r:
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
            self._step("containerd", self._start_containerd)
            self._step("kubelet (node Ready)", lambda: self._start_kubelet(ready_timeout))
            self._step("kube-proxy", self._start_kube_proxy)
            self._step("pods -> API server route", self._route_pods_to_apiserver)
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
                               "kube-proxy", "kubectl", "etcd", "pause") if not (self.bin / b).exists()]
        missing += [t for t in ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "openssl", "ip")
                    if not shutil.which(t)]
        missing += [p for p in ("/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback",
                                "/usr/lib/cni/portmap", "/usr/lib/cni/firewall") if not Path(p).exists()]
        if missing:
            raise TestBedError("missing: " + ", ".join(missing) + " (run e2e/k8s/build.sh; apt-get install "
                               "containerd runc containernetworking-plugins iptables busybox-static)")
        self._lock_fd = open(LOCK_FILE, "w")
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TestBedError(f"another Kubernetes test bed runs on this machine ({LOCK_FILE} is locked)") from None
        self._clean_stale_runs()

    def _clean_stale_runs(self):
        """With the lock held no other test bed is alive: end the processes of a run that was
        killed before its stop() (they name its folder on their command line) and remove its
        folder, so that two kubelets/kube-proxies never fight over this machine."""
        parent = self.dir.parent
        stale = [d for d in parent.glob("tunecluster-k8s-*") if d != self.dir and (d / "logs").is_dir()]
        if not stale:
            return
        markers = [str(d) + "/" for d in stale]
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m in cmdline for m in markers):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(1)
        for d in stale:
            self._unmount_under(d)
            if os.environ.get("TUNECLUSTER_K8S_KEEP") != "1":
                shutil.rmtree(d, ignore_errors=True)
        # NAT rules a killed run left (they carry our comment).
        for line in _run(["iptables", "-t", "nat", "-S", "PREROUTING"], check=False).stdout.splitlines():
            if "tunecluster-testbed" in line and line.startswith("-A "):
                _run(["iptables", "-t", "nat", "-D", *shlex.split(line)[1:]], check=False)

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
            "IP:127.0.0.1", f"IP:{self.api_service_ip}", f"IP:{self.node_ip}", "DNS:localhost", "DNS:kubernetes",
            "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"])
        cert("kubelet-server", f"/CN={self.node_name}", server=True,
             sans=[f"IP:{self.node_ip}", "IP:127.0.0.1", f"DNS:{self.node_name}"])
        cert("admin", "/O=system:masters/CN=tunecluster-admin")
        cert("apiserver-kubelet-client", "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client")
        cert("controller-manager", "/CN=system:kube-controller-manager")
        cert("scheduler", "/CN=system:kube-scheduler")
        cert("kubelet", f"/O=system:nodes/CN=system:node:{self.node_name}")
        cert("kube-proxy", "/CN=system:kube-proxy")
        # Service-account token signing key (ES256).
        key("sa")
        ossl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        server = f"https://127.0.0.1:{self.ports['apiserver']}"
        for name in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy"):
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
        _run(["ip", "link", "del", self.bridge], check=False)  # a leftover of a killed run
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.node_ip}/{self.pod_net.prefixlen}", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        self._sysctl("net.ipv4.ip_forward", "1")
        self._sysctl("net.bridge.bridge-nf-call-iptables", "1")
        self._sysctl(f"net.ipv4.conf.{self.bridge}.route_localnet", "1")

    def _route_pods_to_apiserver(self):
        """Pods -> API server: the `kubernetes` Service (10.96.0.1:443, the in-cluster env vars) and
        the node IP's API port go to the API server on 127.0.0.1 (route_localnet is on for the
        bridge). Inserted after kube-proxy has added its own jump, so that these rules come first."""
        api = f"127.0.0.1:{self.ports['apiserver']}"
        self.wait_for("kube-proxy's first sync (its PREROUTING jump)", lambda: _run(
            ["iptables", "-t", "nat", "-C", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals",
             "-j", "KUBE-SERVICES"], check=False).returncode == 0, 60, log="kube-proxy")
        for dst, port in ((self.api_service_ip, "443"), (self.node_ip, str(self.ports["apiserver"]))):
            rule = ["PREROUTING", "-i", self.bridge, "-d", dst, "-p", "tcp", "--dport", port,
                    "-m", "comment", "--comment", "tunecluster-testbed", "-j", "DNAT", "--to-destination", api]
            _run(["iptables", "-t", "nat", "-I", *rule])
            self._nat_rules.append(rule)

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
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['apiserver']}",
            f"--advertise-address={self.node_ip}",
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
        self.wait_for("kube-apiserver /readyz", lambda: self._https_ok(self.ports["apiserver"], "/readyz"),
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
        self.dns = ClusterDNS(self.node_ip, f"https://127.0.0.1:{self.ports['apiserver']}", p / "ca.crt",
                              p / "admin.crt", p / "admin.key").start()

    # ---------------------------------------------------------- node
    def _start_containerd(self):
        d = self.dir / "containerd"
        cni_conf = self.dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True)
        (d / "root").mkdir(parents=True)
        (cni_conf / "10-tunecluster.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "tunecluster-testbed",
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(self.dir / "cni" / "ipam"),
                          "ranges": [[{"subnet": str(self.pod_net), "gateway": self.node_ip}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                # Docker (if running) sets the FORWARD policy to DROP; this plugin accepts pod traffic.
                {"type": "firewall", "backend": "iptables"},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=1))
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
""")
        self._start("containerd", ["containerd", "--config", d / "config.toml", "--log-level", "info"])
        self.wait_for("containerd socket", lambda: self.ctr("version", check=False).returncode == 0, 60, log="containerd")
        pause = write_oci_image(self.dir / "pause.tar", PAUSE_IMAGE,
                                [("pause", "file", (self.bin / "pause").read_bytes(), 0o755)],
                                entrypoint=["/pause"])
        self.import_image(pause)

    def _start_kubelet(self, ready_timeout: float):
        p = self.pki
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": self.node_ip, "port": self.ports["kubelet"], "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.ports["kubelet_healthz"],
            "tlsCertFile": str(p / "kubelet-server.crt"), "tlsPrivateKeyFile": str(p / "kubelet-server.key"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(p / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs", "failSwapOn": False, "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
            "resolvConf": "/etc/resolv.conf", "clusterDomain": "cluster.local", "clusterDNS": [self.node_ip],
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "maxPods": 50, "rotateCertificates": False,
            "podLogsDir": str(self.dir / "pod-logs"), "registerNode": True, "nodeStatusReportFrequency": "10s", "syncFrequency": "10s",
            "fileCheckFrequency": "10s", "volumeStatsAggPeriod": "0s", "shutdownGracePeriod": "0s",
        }
        (self.dir / "kubelet.yaml").write_text(json.dumps(cfg, indent=1))
        self._start("kubelet", [
            self.bin / "kubelet", f"--config={self.dir / 'kubelet.yaml'}",
            f"--kubeconfig={self.dir / 'kubelet.kubeconfig'}", f"--root-dir={self.dir / 'kubelet'}",
            f"--hostname-override={self.node_name}", f"--node-ip={self.node_ip}",
            f"--pod-infra-container-image={PAUSE_IMAGE}", "--v=1",
        ])

        def ready():
            node = self.kubectl_json("get", "node", self.node_name)
            return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
        self.wait_for(f"node {self.node_name} Ready", ready, ready_timeout, interval=1, log="kubelet")

    def _start_kube_proxy(self):
        cfg = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.dir / "kube-proxy.kubeconfig")},
            "mode": "iptables", "clusterCIDR": str(self.pod_net), "hostnameOverride": self.node_name,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{self.ports['proxy_healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy_metrics']}",
            "conntrack": {"maxPerCore": 0, "min": 0},
            "iptables": {"localhostNodePorts": False},
            "nodePortAddresses": [f"{self.node_ip}/32"],
        }
        (self.dir / "kube-proxy.yaml").write_text(json.dumps(cfg, indent=1))
        self._start("kube-proxy", [self.bin / "kube-proxy", f"--config={self.dir / 'kube-proxy.yaml'}", "--v=1"])

        def healthy():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['proxy_healthz']}/healthz", timeout=3) as r:
                return r.status == 200
        self.wait_for("kube-proxy /healthz", healthy, 60, log="kube-proxy")

    def _setup_cluster_objects(self):
        self.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": STORAGE_CLASS,
                                 "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": "tunecluster.local/hostpath", "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate"})
        self._provisioner = threading.Thread(target=self._provision_loop, name="testbed-provisioner", daemon=True)
        self._provisioner.start()
        self.wait_for("service account default/default",
                      lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0, 60,
                      log="kube-controller-manager")

    def _provision_loop(self):
        """Bind each Pending claim of the test bed's StorageClass to a new hostPath PV (the role a
        dynamic provisioner plays in a real cluster)."""
        while not self._stop_provisioner.wait(1.0):
            try:
                claims = self.kubectl_json("get", "pvc", "-A")["items"]
                for pvc in claims:
                    spec, meta = pvc["spec"], pvc["metadata"]
                    sc = spec.get("storageClassName")
                    if pvc["status"].get("phase") != "Pending" or sc != STORAGE_CLASS or spec.get("volumeName"):
                        continue
                    pv_name = f"pv-{meta['namespace']}-{meta['name']}"[:240] + "-" + meta["uid"][:8]
                    path = self.dir / "volumes" / pv_name
                    path.mkdir(parents=True, exist_ok=True)
                    path.chmod(0o777)
                    self.apply({
                        "apiVersion": "v1", "kind": "PersistentVolume",
                        "metadata": {"name": pv_name, "labels": {"tunecluster.local/testbed": "1"},
                                     "annotations": {"pv.kubernetes.io/provisioned-by": "tunecluster.local/hostpath"}},
                        "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                                 "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                                 "volumeMode": spec.get("volumeMode", "Filesystem"),
                                 "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                                 "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}},
                    })
            except Exception as exc:  # noqa: BLE001 - keep serving; tests can inspect the errors
                self.provisioner_errors.append(str(exc))

    # ---------------------------------------------------------- stop
    def stop(self):
        self._stop_provisioner.set()
        if self._provisioner:
            self._provisioner.join(timeout=10)
        if "kubelet" in self.procs and self.procs["kubelet"].poll() is None:
            # Let the kubelet tear pods down (CNI DEL, unmounts) before it stops.
            with contextlib.suppress(Exception):
                self.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force",
                             "--wait=false", check=False, timeout=30)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and self.ctr("containers", "ls", "-q", check=False).stdout.strip():
                    time.sleep(1)
        if self.dns:
            self.dns.stop()
            self.dns = None
        for name in ("kube-proxy", "kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop_proc(name)
        self._stop_containerd()
        if (self.bin / "kube-proxy").exists():
            _run([self.bin / "kube-proxy", "--cleanup"], check=False, timeout=60)
        for rule in self._nat_rules:
            _run(["iptables", "-t", "nat", "-D", *rule], check=False)
        self._nat_rules = []
        self._cleanup_cni_iptables()
        _run(["ip", "link", "del", self.bridge], check=False)
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

    def _stop_proc(self, name: str, timeout: float = 15):
        proc = self.procs.pop(name, None)
        if not proc or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def _stop_containerd(self):
        if "containerd" in self.procs and self.procs["containerd"].poll() is None:
            with contextlib.suppress(Exception):
                for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                    self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        self._stop_proc("containerd")
        # containerd-shim processes outlive containerd; end the ones serving this test bed.
        marker = str(self.dir / "containerd")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "containerd-shim" in cmdline and marker in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)

    def _cleanup_cni_iptables(self):
        """Remove the chains the CNI firewall/portmap plugins left (their per-pod rules are gone
        after CNI DEL; the base chains stay)."""
        for table, chain, parents in (("filter", "CNI-FORWARD", ["FORWARD"]), ("filter", "CNI-ADMIN", []),
                                      ("nat", "CNI-HOSTPORT-DNAT", ["PREROUTING", "OUTPUT"]),
                                      ("nat", "CNI-HOSTPORT-SNAT", ["POSTROUTING"]),
                                      ("nat", "CNI-HOSTPORT-MASQ", [])):
            for parent in parents:
                while _run(["iptables", "-t", table, "-D", parent, "-j", chain], check=False).returncode == 0:
                    pass
                for extra in (["-m", "comment", "--comment", "CNI firewall plugin rules"],
                              ["-m", "comment", "--comment", "CNI portfwd requiring masquerade"],
                              ["-m", "addrtype", "--dst-type", "LOCAL"]):
                    while _run(["iptables", "-t", table, "-D", parent, *extra, "-j", chain], check=False).returncode == 0:
                        pass
        for table, chain in (("filter", "CNI-FORWARD"), ("filter", "CNI-ADMIN"), ("nat", "CNI-HOSTPORT-DNAT"),
                             ("nat", "CNI-HOSTPORT-SNAT"), ("nat", "CNI-HOSTPORT-MASQ")):
            _run(["iptables", "-t", table, "-F", chain], check=False)
            _run(["iptables", "-t", table, "-X", chain], check=False)
        # ipMasq chains of the bridge plugin: CNI-<hash> in nat POSTROUTING, one per pod (removed on DEL).
        # The kubelet's own chains (kube-proxy --cleanup leaves them), IPv4 and IPv6.
        for tool in ("iptables", "ip6tables"):
            if not shutil.which(tool):
                continue
            for parent in ("INPUT", "OUTPUT"):
                while _run([tool, "-D", parent, "-j", "KUBE-FIREWALL"], check=False).returncode == 0:
                    pass
            for table in ("filter", "nat", "mangle"):
                for chain in ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"):
                    _run([tool, "-t", table, "-F", chain], check=False)
                    _run([tool, "-t", table, "-X", chain], check=False)

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
        print("usage: testbed.py build | up", file=sys.stderr)
        return 2
    bin_dir = build()
    if argv[1] == "build":
        print(bin_dir)
        return 0
    bed = TestBed(bin_dir)
    t = time.monotonic()
    bed.start()
    print(f"test bed up in {time.monotonic() - t:.1f}s: {bed.describe()}")
    print(f"  export KUBECONFIG={bed.kubeconfig}   (logs in {bed.logs}); Ctrl-C stops and cleans up")
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
