"""ChiefLink's retries while the chief is away: a restarted chief is found again within about a
second (back-off capped at 1 s), over a real gRPC server that goes away and comes back."""

import time

import grpc
import pytest

from tunecluster.cluster.worker.chief_link import ChiefLink, ChiefUnreachable


class _Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "connection refused"


def test_backoff_never_waits_more_than_a_second():
    delays = []
    failures = iter(range(12))

    def method(request, timeout, wait_for_ready):
        if next(failures, None) is not None:
            raise _Unavailable()
        return "ok"

    link = ChiefLink("chief:1", chief_timeout=600, sleep=delays.append)
    assert link.call(method, {}, timeout=1, what="NextWork") == "ok"
    assert len(delays) == 12 and max(delays) <= 1.0 and delays[0] <= 0.2
    assert link.reconnects == 1


def test_gives_up_after_chief_timeout():
    def method(request, timeout, wait_for_ready):
        raise _Unavailable()

    link = ChiefLink("chief:1", chief_timeout=0.3, sleep=lambda s: time.sleep(min(s, 0.05)))
    with pytest.raises(ChiefUnreachable):
        link.call(method, {}, timeout=1, what="NextWork")


def test_worker_call_resumes_within_two_seconds_of_a_restarted_chief():
    """A server that was down for ~3 s comes back on the same port: the pending call completes
    within 2 s of it answering (gRPC's redial back-off and the link's are both capped)."""
    from concurrent import futures

    from tunecluster.cluster.control import ControlClient, control_handler
    from tunecluster.core.network import free_port
    from tunecluster.cluster.auth import Security, open_channel

    class Impl:
        def __getattr__(self, name):
            return lambda request: {"status": "IDLE"}

    port = free_port()

    def serve():
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((control_handler(Impl()),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        return server

    server = serve()
    channel = open_channel(f"127.0.0.1:{port}", Security())
    link = ChiefLink(f"127.0.0.1:{port}", chief_timeout=60)
    client = ControlClient(channel, timeout=0.5, link=link)
    assert client.call("NextWork", tuner_id="t")["status"] == "IDLE"
    server.stop(grace=0).wait()
    import threading

    answered = {}

    def call():
        client.call("NextWork", tuner_id="t")
        answered["at"] = time.monotonic()

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(3.0)  # the worker retries meanwhile (deadlines, back-off, redials)
    server = serve()
    back = time.monotonic()
    thread.join(10)
    server.stop(grace=0)
    channel.close()
    assert "at" in answered, "the call never completed"
    assert answered["at"] - back <= 2.0, f"resumed {answered['at'] - back:.2f} s after the chief answered"


def test_calls_the_chief_sheds_with_cancelled_are_tried_again():
    """A chief under load answers some calls CANCELLED at once (gRPC's C core sheds calls its
    Python server has not taken up): a real server that does so twice, then answers."""
    from concurrent import futures

    from tunecluster.cluster import control
    from tunecluster.cluster.auth import Security, open_channel
    from tunecluster.core.network import free_port

    calls = []

    def next_work(request, context):
        calls.append(request)
        if len(calls) <= 2:
            context.abort(grpc.StatusCode.CANCELLED, "shed")
        return {"status": "IDLE"}

    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(control.SERVICE, {
        "NextWork": grpc.unary_unary_rpc_method_handler(next_work, request_deserializer=control._loads,
                                                        response_serializer=control._dumps)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    channel = open_channel(f"127.0.0.1:{port}", Security())
    try:
        client = control.ControlClient(channel, timeout=5, link=ChiefLink(f"127.0.0.1:{port}", chief_timeout=30))
        assert client.call("NextWork", tuner_id="t") == {"status": "IDLE"}
        assert len(calls) == 3
    finally:
        channel.close()
        server.stop(grace=0)
