"""`tunecluster tensorboard` for a Kubernetes run: a local TCP relay on 127.0.0.1 whose every
connection is carried to the TensorBoard pod's port through the API server's port-forward
(`kubernetes.stream.portforward`), the way `kubectl port-forward` does it.

`Relay` is the generic part: it listens on a local address and, for each accepted connection,
opens an upstream socket with a callable and copies bytes both ways until either side closes. The
`TensorBoardForward` gives it upstreams: one port-forward websocket per connection to the newest
ready pod of the experiment's TensorBoard Deployment (looked up again when a pod goes away).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from typing import Callable, Optional

from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.core.errors import RunFailure, UsageError

log = logging.getLogger(__name__)

TENSORBOARD_PORT = 6006  # the container port render.py gives TensorBoard
CHUNK = 64 * 1024
POD_CACHE_S = 5.0  # how long a looked-up pod is used before the pods are listed again


class Relay:
    """Accept connections on (host, port) (port 0: a free one) and pipe each to `connect()`."""

    def __init__(self, connect: Callable[[], object], host: str = "127.0.0.1", port: int = 0):
        self._connect = connect
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError as exc:
            self._listener.close()
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"
                             + (" or --host" if host != "127.0.0.1" else "")) from None
        self._listener.listen(64)
        self.host, self.port = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set = set()
        self.connections = 0  # accepted so far
        self.failures = 0  # upstreams that could not be opened
        self._thread = threading.Thread(target=self._accept_loop, name="relay-accept", daemon=True)

    def start(self) -> "Relay":
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.5)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except (OSError, ValueError):  # closed under us
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), name="relay-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self._connect()
        except Exception as exc:
            self.failures += 1
            log.debug("relay: no upstream for a connection: %s", exc)
            client.close()
            return
        with self._lock:
            if self._closed.is_set():
                _close(client, upstream)
                return
            self._open.update((client, upstream))
        try:
            pipe(client, upstream, self._closed)
        finally:
            with self._lock:
                self._open.difference_update((client, upstream))
            _close(client, upstream)

    def close(self) -> None:
        """Stop accepting and cut every open connection."""
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            for sock in list(self._open):
                _close(sock)
            self._open.clear()
        if self._thread.is_alive():
            self._thread.join(timeout=2)


def _close(*socks) -> None:
    for sock in socks:
        try:
            sock.close()
        except Exception:
            pass


def pipe(a, b, stop: Optional[threading.Event] = None) -> None:
    """Copy bytes between two connected sockets (anything with fileno/recv/sendall) until one side
    closes (its data is delivered first) or `stop` is set."""
    peers = {a.fileno(): (a, b), b.fileno(): (b, a)}
    while not (stop and stop.is_set()):
        try:
            ready, _, _ = select.select(list(peers), [], [], 0.5)
        except (OSError, ValueError):
            return
        for fd in ready:
            source, sink = peers[fd]
            try:
                data = source.recv(CHUNK)
            except (OSError, ValueError):
                return
            if not data:
                return
            try:
                sink.sendall(data)
            except (OSError, ValueError):
                return


# --- the TensorBoard pod of a Kubernetes run -------------------------------------------------------
class TensorBoardForward:
    """Upstream connections to the TensorBoard pod of `experiment` through the API server.

    The kubernetes client's websocket calls swap a method on the shared ApiClient while they set
    up, so every API call here goes through one lock."""

    def __init__(self, cluster: Cluster, experiment: str, port: int = TENSORBOARD_PORT):
        self.cluster, self.experiment, self.port = cluster, experiment, port
        self._lock = threading.Lock()
        self._pod: Optional[str] = None
        self._pod_seen = 0.0

    def ready_pod(self) -> Optional[str]:
        """The newest Ready pod of the TensorBoard Deployment, or None; a pod problem a user must
        act on (an image that cannot be pulled, a bad configuration) raises RunFailure. A pod that
        is not scheduled yet is waited for (wait_until_serving's timeout then says where to look)."""
        from tunecluster.backends.kubernetes.pod_problems import pod_problem
        from tunecluster.backends.kubernetes.pods import role_pods

        with self._lock:
            pods = role_pods(self.cluster, self.experiment, "tensorboard")
        ready = [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
                 and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        if ready:
            return ready[-1].metadata.name
        for pod in pods:
            problem = pod_problem(pod)
            if problem and "cannot be scheduled" not in problem:
                raise RunFailure(f"TensorBoard: {problem}")
        return None

    def connect(self):
        """A socket carried to the pod's TensorBoard port (one port-forward websocket)."""
        from kubernetes.stream import portforward

        now = time.monotonic()
        if self._pod is None or now - self._pod_seen >= POD_CACHE_S:
            self._pod, self._pod_seen = self.ready_pod(), now
        pod = self._pod
        if pod is None:
            raise RunFailure(f"no ready TensorBoard pod of {self.experiment!r}")
        try:
            with self._lock:
                forward = portforward(self.cluster.core.connect_get_namespaced_pod_portforward, pod,
                                      self.cluster.namespace, ports=str(self.port))
        except Exception as exc:
            self._pod = None  # the pod may be gone: look again next time
            raise forward_error(exc, pod) from None
        return forward.socket(self.port)


def forward_error(exc: Exception, pod: str):
    """One line for a port-forward that could not be opened (the websocket handshake's answer)."""
    from kubernetes.client.exceptions import ApiException

    reason = str(getattr(exc, "reason", "") or exc)
    if isinstance(exc, ApiException) and exc.status == 0:
        if "403" in reason:
            return UsageError(f"forbidden to port-forward to pod {pod}: you lack the verb 'create' on "
                              "'pods/portforward'; `tunecluster render --rbac` prints the Role tunecluster needs")
        return RunFailure(f"port-forward to pod {pod} failed: {reason.splitlines()[0] if reason else exc}")
    return explain(exc, f"port-forwarding to pod {pod}")


def deployment_exists(cluster: Cluster, name: str) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.AppsV1Api(cluster.api).read_namespaced_deployment(name, cluster.namespace)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise explain(exc, f"reading Deployment {name}") from None
    except Exception as exc:
        raise explain(exc, f"reading Deployment {name}") from None


def claim_exists(cluster: Cluster, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.core.read_namespaced_persistent_volume_claim(name, cluster.namespace)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise explain(exc, f"reading PersistentVolumeClaim {name}") from None
    except Exception as exc:
        raise explain(exc, f"reading PersistentVolumeClaim {name}") from None


def wait_until_serving(relay: Relay, forward: TensorBoardForward, timeout: float = 180) -> None:
    """Wait for a ready TensorBoard pod, then until TensorBoard answers HTTP through the relay."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    probe = f"http://127.0.0.1:{relay.port}/data/environment" if relay.host in ("0.0.0.0", "") else \
        f"http://{relay.host}:{relay.port}/data/environment"
    last = "no ready pod"
    while time.monotonic() < deadline:
        if forward.ready_pod() is None:
            last = "no ready pod"
            time.sleep(1)
            continue
        try:
            with urllib.request.urlopen(probe, timeout=10) as answer:
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(1)
    raise RunFailure(f"TensorBoard of {forward.experiment!r} did not answer through the port-forward within "
                     f"{timeout:.0f} s ({last}); see `kubectl -n {forward.cluster.namespace} describe pod -l "
                     f"tunecluster.io/experiment={forward.experiment},tunecluster.io/role=tensorboard`")
