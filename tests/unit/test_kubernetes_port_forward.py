"""The local relay behind `tunecluster tensorboard` for Kubernetes runs
(`backends/kubernetes/forward.py`), with plain local sockets as upstreams. The real port-forward
through an API server to a TensorBoard pod runs in the e2e_kubernetes suite
(tests/e2e/test_kubernetes_backend.py)."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.request

import pytest
from kubernetes.client.exceptions import ApiException

from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.backends.kubernetes.forward import Relay, forward_error


@pytest.fixture
def echo_server():
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()
    stop.set()
    listener.close()


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        received = bytearray()
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sender.join()
        return bytes(received)


def test_relay_carries_concurrent_connections_both_ways(echo_server):
    relay = Relay(lambda: socket.create_connection(echo_server), host="127.0.0.1", port=0).start()
    try:
        assert relay.port > 0
        payloads = [bytes([i]) * (1_000_000 + i) for i in range(4)]
        results = [None] * len(payloads)

        def one(i):
            results[i] = _roundtrip(relay.port, payloads[i])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == payloads
        assert relay.connections == 4 and relay.failures == 0
    finally:
        relay.close()


def test_relay_serves_http(tmp_path):
    (tmp_path / "index.html").write_text("<title>TensorBoard</title>")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    relay = Relay(lambda: socket.create_connection(server.server_address)).start()
    try:
        for _ in range(3):  # a new upstream per connection
            with urllib.request.urlopen(f"http://127.0.0.1:{relay.port}/index.html", timeout=10) as answer:
                assert answer.status == 200 and b"TensorBoard" in answer.read()
        assert relay.connections == 3
    finally:
        relay.close()
        server.shutdown()


def test_an_upstream_that_cannot_be_opened_closes_only_that_connection(echo_server):
    attempts = []

    def connect():
        attempts.append(1)
        if len(attempts) == 1:
            raise RunFailure("no ready TensorBoard pod")
        return socket.create_connection(echo_server)

    relay = Relay(connect).start()
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            assert sock.recv(10) == b""  # closed at once, no hang
        assert _roundtrip(relay.port, b"still serving") == b"still serving"
        assert relay.failures == 1 and relay.connections == 2
    finally:
        relay.close()


def test_close_cuts_open_connections_and_frees_the_port(echo_server):
    relay = Relay(lambda: socket.create_connection(echo_server)).start()
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    assert _roundtrip(relay.port, b"x") == b"x"
    sock.sendall(b"ping")
    assert sock.recv(4) == b"ping"
    relay.close()
    assert sock.recv(10) == b""
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=2)
    Relay(lambda: None, port=relay.port).close()  # the port can be bound again


def test_a_port_in_use_is_one_line():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(UsageError, match="pick another --port"):
            Relay(lambda: None, port=taken.getsockname()[1])


def test_a_refused_port_forward_names_the_missing_permission():
    error = forward_error(ApiException(status=0, reason="Handshake status 403 Forbidden -+-+- {...}"), "tb-pod")
    assert isinstance(error, UsageError) and "'pods/portforward'" in str(error) and "render --rbac" in str(error)
    error = forward_error(ApiException(status=0, reason="Handshake status 500 Internal Server Error"), "tb-pod")
    assert isinstance(error, RunFailure) and "port-forward to pod tb-pod failed" in str(error)


