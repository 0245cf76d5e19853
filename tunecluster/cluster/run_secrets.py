"""Every token and certificate of a run is made here, for every backend.

- `new_token()`: a fresh oracle token (32 random bytes, URL-safe);
- `make_certificate(names)`: a self-signed TLS certificate and key (PEM) for the chief;
- `RunSecrets`: the token and TLS files of one run in `<run>/secrets/` (folder 0700, files 0600),
  kept on resume (a resumed run needs the same token), owned by the image's user when a container
  reads them (compose).

The Kubernetes backend keeps them in the experiment's Secret instead (made with the same two
functions); `cluster/plan.py` decides where each role finds them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Optional

LOCAL_NAMES = ("tunecluster-chief", "chief", "localhost")  # the chief's names on one machine / in compose


def new_token() -> str:
    return secrets.token_urlsafe(32)


class RunSecrets:
    """The token and TLS files of one run, in `<run>/secrets/` (directory 0700, files 0600).
    `owner_uid`: hand the files to this user when running as root (a container's user reads them)."""

    def __init__(self, root: str | Path, owner_uid: Optional[int] = None):
        self.dir = Path(root) / "secrets"
        self.owner_uid = owner_uid

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
        os.chmod(path, 0o600)
        if self.owner_uid is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
            os.chown(path, self.owner_uid, 0)

    def ensure_token(self, given: Optional[str] = None) -> Path:
        """Keep an existing token (a resumed run needs the same one); else write `given` or a new one."""
        if not self.token.is_file():
            self._write_private(self.token, ((given or new_token()) + "\n").encode())
        return self.token

    def read_token(self) -> str:
        return self.token.read_text().strip()

    def ensure_tls(self, names: tuple[str, ...] = LOCAL_NAMES) -> tuple[Path, Path]:
        if not (self.tls_cert.is_file() and self.tls_key.is_file()):
            cert, key = make_certificate(names)
            self._write_private(self.tls_key, key)
            self._write_private(self.tls_cert, cert)
        return self.tls_cert, self.tls_key


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
