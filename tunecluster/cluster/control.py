"""tunecluster's own small RPC service beside Keras Tuner's `Oracle` service, on the same port.

Keras Tuner's protocol has no heartbeat, no way to report an error message and no "search is
over, who exports the best model?". These calls carry JSON bytes over gRPC generic handlers (no
generated code), so they never disturb Keras Tuner's own protos:

- `Heartbeat`   a worker's current trial, epoch and metrics (feeds the live view, renews the
                trial's lease; the answer names a trial whose lease the worker lost)
- `Release`     a worker that is shutting down gives its trial back to the queue
- `TrialNote`   the error type and message of a trial that failed in the worker
- `SetSpace`    the search space as Keras Tuner's JSON config; unlike the proto of `UpdateSpace`
                (grouped by type) it keeps the declaration order, so a seeded search samples the
                same trials as a single-process Keras Tuner run
- `NextWork`    the next training for a worker: an execution of a trial, or a confirmation run
                (with its seed), or IDLE / STOPPED (see `work_service`)
- `WorkDone`    a training's result (both epoch scores, weights file) or its error; with `next`,
                the answer also carries the worker's next unit (one round trip per training)
- `Finish`      a worker that got STOPPED asks whether it should export the best model
- `ExportDone`  the exporting worker is done (or failed), the chief may exit
- `Status`      the chief's progress snapshot (same content as progress.json)
"""

from __future__ import annotations

import json
from typing import Any, Callable

import grpc

SERVICE = "tunecluster.Control"
METHODS = ("Heartbeat", "Release", "TrialNote", "SetSpace", "NextWork", "WorkDone", "Finish", "ExportDone",
           "Status")


def _dumps(data: Any) -> bytes:
    return json.dumps(data, default=str).encode()


def _loads(raw: bytes) -> Any:
    return json.loads(raw.decode()) if raw else {}


def control_handler(impl: Any) -> grpc.GenericRpcHandler:
    """A gRPC handler that routes each method to `impl.<Method>(request_dict) -> dict`."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _wrap(getattr(impl, name)), request_deserializer=_loads, response_serializer=_dumps
        )
        for name in METHODS
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _wrap(method: Callable[[dict], dict]):
    def handle(request, context):
        from tunecluster.cluster.auth import caller_id

        caller = caller_id(context)
        if caller and "tuner_id" in request and request["tuner_id"] != caller:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "tuner_id differs from the caller's id")
        return method(request)

    return handle


class ControlClient:
    """The worker's (and the CLI's) side of the control service; calls go through `link`
    (retries while the chief is away) when one is given."""

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0, link=None):
        self._timeout = timeout
        self._link = link
        self._calls = {
            name: channel.unary_unary(
                f"/{SERVICE}/{name}", request_serializer=_dumps, response_deserializer=_loads
            )
            for name in METHODS
        }

    def call(self, method: str, timeout: float | None = None, **request: Any) -> dict:
        if self._link is not None:
            return self._link.call(self._calls[method], request, timeout=timeout or self._timeout, what=method)
        return self._calls[method](request, timeout=timeout or self._timeout, wait_for_ready=True)
