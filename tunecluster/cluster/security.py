"""Who may talk to the oracle port: the shared token, optional TLS, and the gRPC server
credentials, interceptor and client channels built from them.

- Every call carries `authorization: Bearer <token>`; the chief refuses a missing or wrong token
  with UNAUTHENTICATED before the call reaches the oracle (so it changes nothing) and logs the
  refusal (method and peer, never the token).
- The token is generated per experiment (`RunSecrets`, mode 0600 under `<run>/secrets/`) unless
  the user gives one, and reaches the roles through `TUNECLUSTER_TOKEN_FILE` (a mounted secret)
  or `TUNECLUSTER_TOKEN`.
- `TUNECLUSTER_INSECURE=1` (`--insecure`) serves without a token, so unmodified Keras Tuner
  workers can join; the chief then warns that any caller can drive the search.
- TLS (optional): a self-signed certificate made per experiment (or the user's files); workers
  trust exactly that certificate (`TUNECLUSTER_TLS_CA`).
"""

from __future__ import annotations

import collections
import datetime
import hmac
import ipaddress
import logging
import os
import secrets
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
CERT_NAMES = ("tunecluster-chief", "chief", "localhost")


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


# --- per-experiment secrets ---------------------------------------------------------------------
class RunSecrets:
    """The token and TLS files of one run, in `<run>/secrets/` (directory 0700, files 0600)."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / "secrets"

    token = property(lambda self: self.dir / "token")
    tls_cert = property(lambda self: self.dir / "tls.crt")
    tls_key = property(lambda self: self.dir / "tls.key")

    def _write_private(self, path: Path, data: bytes) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def ensure_token(self, given: Optional[str] = None) -> Path:
        """Keep an existing token (a resumed run needs the same one); else write `given` or a new one."""
        if not self.token.is_file():
            self._write_private(self.token, ((given or secrets.token_urlsafe(32)) + "\n").encode())
        return self.token

    def ensure_tls(self, extra_names: tuple[str, ...] = ()) -> tuple[Path, Path]:
        if not (self.tls_cert.is_file() and self.tls_key.is_file()):
            cert, key = make_certificate((*CERT_NAMES, *extra_names))
            self._write_private(self.tls_key, key)
            self._write_private(self.tls_cert, cert)
        return self.tls_cert, self.tls_key

    def role_env(self, *, insecure: bool, tls: bool) -> tuple[dict[str, str], dict[str, str]]:
        """(chief env, worker env) naming these files."""
        chief: dict[str, str] = {}
        worker: dict[str, str] = {}
        if insecure:
            chief[role_env.INSECURE] = worker[role_env.INSECURE] = "1"
        else:
            chief[role_env.TOKEN_FILE] = worker[role_env.TOKEN_FILE] = str(self.token)
        if tls:
            chief[role_env.TLS_CERT] = str(self.tls_cert)
            chief[role_env.TLS_KEY] = str(self.tls_key)
            worker[role_env.TLS_CA] = str(self.tls_cert)
        return chief, worker


def make_certificate(names: tuple[str, ...], days: int = 365) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) for the chief, valid for `names` and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = [x509.DNSName(n) for n in dict.fromkeys(names)] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


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
