"""Who may talk to the oracle port: what a role knows of the token and TLS (`Security`, from its
environment), and the gRPC server credentials, interceptor and client channels built from them.

- Every call carries `authorization: Bearer <token>`; the chief refuses a missing or wrong token
  with UNAUTHENTICATED before the call reaches the oracle (so it changes nothing) and logs the
  refusal (method and peer, never the token).
- The token is generated per experiment (`run_secrets.RunSecrets`, mode 0600 under
  `<run>/secrets/`) unless the user gives one, and reaches the roles through
  `TUNECLUSTER_TOKEN_FILE` (a mounted secret) or `TUNECLUSTER_TOKEN`.
- `TUNECLUSTER_INSECURE=1` (`--insecure`) serves without a token, so unmodified Keras Tuner
  workers can join; the chief then warns that any caller can drive the search.
- TLS (optional): a self-signed certificate made per experiment (`run_secrets`, or the user's
  files); workers trust exactly that certificate (`TUNECLUSTER_TLS_CA`).
"""

from __future__ import annotations

import collections
import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

import grpc

from tunecluster.core import env as role_env
from tunecluster.core.errors import UsageError

log = logging.getLogger("tunecluster.security")

TOKEN_HEADER = "authorization"
TUNER_HEADER = "tunecluster-tuner-id"  # which worker is calling (leases, late-result refusal)


@dataclass(frozen=True)
class Security:
    """What one role knows about the oracle port's protection."""

    token: Optional[str] = None  # None: insecure
    tls_cert: Optional[bytes] = None  # chief
    tls_key: Optional[bytes] = None  # chief
    tls_ca: Optional[bytes] = None  # workers and the CLI
    server_name: Optional[str] = None

    @property
    def insecure(self) -> bool:
        return self.token is None


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _read_file(path: str, what: str, variable: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{variable}={path}: cannot read the {what} ({exc.strerror}); "
                         f"point {variable} at the file or mount it there") from None
    if not data.strip():
        raise UsageError(f"{variable}={path}: the {what} file is empty")
    return data


def read_security(environ: Mapping[str, str] = os.environ, *, chief: bool = False) -> Security:
    """The token and TLS material of a role, from its environment (see `env.py`)."""
    token = None
    if not _truthy(environ.get(role_env.INSECURE)):
        if environ.get(role_env.TOKEN_FILE):
            token = _read_file(environ[role_env.TOKEN_FILE], "oracle token", role_env.TOKEN_FILE).decode().strip()
        elif environ.get(role_env.TOKEN, "").strip():
            token = environ[role_env.TOKEN].strip()
        else:
            raise UsageError(
                f"no oracle token: set {role_env.TOKEN_FILE} (a file holding the token) or "
                f"{role_env.TOKEN} for every role, or {role_env.INSECURE}=1 (--insecure) to let any "
                "caller drive the search"
            )
    cert = key = ca = None
    if chief:
        given = [v for v in (role_env.TLS_CERT, role_env.TLS_KEY) if environ.get(v)]
        if len(given) == 1:
            missing = role_env.TLS_KEY if given[0] == role_env.TLS_CERT else role_env.TLS_CERT
            raise UsageError(f"{given[0]} is set but {missing} is not; TLS needs both the certificate and its key")
        if given:
            cert = _read_file(environ[role_env.TLS_CERT], "TLS certificate", role_env.TLS_CERT)
            key = _read_file(environ[role_env.TLS_KEY], "TLS key", role_env.TLS_KEY)
    if environ.get(role_env.TLS_CA):
        ca = _read_file(environ[role_env.TLS_CA], "TLS certificate to trust", role_env.TLS_CA)
    return Security(token, cert, key, ca, environ.get(role_env.TLS_SERVER_NAME) or None)


# --- the chief's side -------------------------------------------------------------------------------
class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call without the right token (UNAUTHENTICATED) before any handler runs."""

    def __init__(self, token: str, on_refusal: Optional[Callable[[str, str, str], None]] = None):
        self._expected = f"Bearer {token}".encode()
        self._on_refusal = on_refusal or _log_refusal

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        supplied = str(metadata.get(TOKEN_HEADER, ""))
        if hmac.compare_digest(supplied.encode(), self._expected):
            return continuation(handler_call_details)
        reason = "no token" if not supplied else "wrong token"
        method = handler_call_details.method
        on_refusal = self._on_refusal

        def refuse(request, context):
            on_refusal(method, context.peer(), reason)
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          f"{reason}: this oracle requires the experiment's token")

        return grpc.unary_unary_rpc_method_handler(refuse)


_refusals: dict = collections.defaultdict(float)
_refusals_lock = threading.Lock()


def _log_refusal(method: str, peer: str, reason: str) -> None:
    """Log a refused call, at most once per peer and reason every 10 s (a scanner cannot flood the log)."""
    now = time.monotonic()
    with _refusals_lock:
        if now - _refusals[(peer, reason)] < 10:
            return
        _refusals[(peer, reason)] = now
    log.warning("refused %s from %s: %s (UNAUTHENTICATED)", method, peer, reason)


def server_credentials(security: Security) -> Optional[grpc.ServerCredentials]:
    if security.tls_cert and security.tls_key:
        return grpc.ssl_server_credentials([(security.tls_key, security.tls_cert)])
    return None


# --- the callers' side ----------------------------------------------------------------------------
class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                            "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _MetadataInterceptor(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, metadata: list[tuple[str, str]]):
        self._metadata = metadata

    def intercept_unary_unary(self, continuation, details, request):
        metadata = list(details.metadata or ()) + self._metadata
        return continuation(_CallDetails(details.method, details.timeout, metadata, details.credentials,
                                         details.wait_for_ready, details.compression), request)


# Reconnect within ~2 s once a restarted chief listens again (gRPC's default waits up to 120 s).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),  # a restarted chief is found within ~1 s
]


def open_channel(address: str, security: Security, tuner_id: Optional[str] = None) -> grpc.Channel:
    """A channel to the chief that sends the token (and the caller's tuner id) on every call."""
    options = list(CHANNEL_OPTIONS)
    if security.tls_ca:
        if security.server_name:
            options.append(("grpc.ssl_target_name_override", security.server_name))
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=security.tls_ca),
                                      options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    metadata = []
    if security.token:
        metadata.append((TOKEN_HEADER, f"Bearer {security.token}"))
    if tuner_id:
        metadata.append((TUNER_HEADER, tuner_id))
    return grpc.intercept_channel(channel, _MetadataInterceptor(metadata)) if metadata else channel


def caller_id(context) -> Optional[str]:
    """The tuner id a tunecluster worker sends with its calls (None for stock Keras Tuner)."""
    if context is None:
        return None
    for key, value in context.invocation_metadata() or ():
        if key == TUNER_HEADER:
            return value
    return None
