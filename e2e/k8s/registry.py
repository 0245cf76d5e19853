"""The test bed's image registry: the CNCF distribution registry (built by build.sh from its Go
module), serving TLS with a certificate from the bed's CA and htpasswd (bcrypt) authentication.

Images reach the nodes only through it: ``push_oci_archive`` uploads an OCI archive (such as
``testbed.write_oci_image`` writes) over the registry's HTTP API, ``push_docker_image`` tags and
pushes an image of the local Docker daemon (with a Docker client configuration of its own, so that
the user's ``~/.docker`` is never touched), and the kubelets pull with an ``imagePullSecret``
(``pull_secret``). Each node's containerd trusts the bed's CA for this registry through a
``hosts.toml`` under its ``config_path`` (``write_containerd_hosts``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DOCKER_CERTS = Path("/etc/docker/certs.d")


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self, bin_dir: Path, workdir: Path, ca: Path, cert: Path, key: Path, ip: str, port: int = 5443,
                 user: str = "tunecluster"):
        self.bin = Path(bin_dir)
        self.dir = Path(workdir)
        self.ca, self.cert, self.key = Path(ca), Path(cert), Path(key)
        self.host = f"{ip}:{port}"
        self.user = user
        self.password = secrets.token_urlsafe(18)
        self.proc: subprocess.Popen | None = None
        self.docker_config = self.dir / "docker-config"
        self._docker_certs: Path | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    # ---------------------------------------------------------- life
    def start(self, log: Path) -> Registry:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = subprocess.run([str(self.bin / "htpasswd"), self.user], input=self.password + "\n", text=True,
                              capture_output=True, check=True).stdout
        (self.dir / "htpasswd").write_text(line)
        config = {
            "version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "tls": {"certificate": str(self.cert), "key": str(self.key)},
                     "debug": {"addr": ""}},
            "auth": {"htpasswd": {"realm": "tunecluster-testbed", "path": str(self.dir / "htpasswd")}},
        }
        (self.dir / "config.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([str(self.bin / "registry"), "serve", str(self.dir / "config.yml")],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True,
                                         # no OpenTelemetry exporter (it would post traces to localhost:4318)
                                         env={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
        return self

    def ready(self) -> bool:
        """/v2/ answers 401 without credentials and 200 with them."""
        try:
            self._request("GET", "/v2/", auth=False)
            return False  # no authentication: not what we configured
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                return False
        return self._request("GET", "/v2/").status == 200

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self._docker_certs:
            shutil.rmtree(self._docker_certs, ignore_errors=True)
            self._docker_certs = None

    # ---------------------------------------------------------- clients' trust and credentials
    def write_containerd_hosts(self, certs_d: Path):
        """containerd (config_path = certs_d) trusts the bed's CA for this registry."""
        d = Path(certs_d) / self.host
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts.toml").write_text(f'server = "{self.url}"\n\n[host."{self.url}"]\n'
                                      f'  capabilities = ["pull", "resolve"]\n  ca = "{self.ca}"\n')

    def auth_json(self) -> dict:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"auths": {self.host: {"username": self.user, "password": self.password, "auth": token}}}

    def pull_secret(self, name: str = "registry-credentials", namespace: str | None = None) -> dict:
        """A kubernetes.io/dockerconfigjson Secret with this registry's credentials."""
        meta = {"name": name, **({"namespace": namespace} if namespace else {})}
        data = base64.b64encode(json.dumps(self.auth_json()).encode()).decode()
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": data}}

    # ---------------------------------------------------------- pushing
    def _request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None,
                 auth: bool = True):
        url = path if path.startswith("https://") else self.url + path
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if auth:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return urllib.request.urlopen(req, context=ctx, timeout=120)

    def _push_blob(self, repository: str, digest: str, data: bytes):
        with contextlib.suppress(urllib.error.HTTPError):
            if self._request("HEAD", f"/v2/{repository}/blobs/{digest}").status == 200:
                return
        start = self._request("POST", f"/v2/{repository}/blobs/uploads/", data=b"")
        location = urllib.parse.urljoin(self.url, start.headers["Location"])
        sep = "&" if "?" in location else "?"
        self._request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", data=data,
                      headers={"Content-Type": "application/octet-stream"})

    def push_oci_archive(self, archive: Path, repository: str, tag: str) -> str:
        """Upload a one-manifest OCI image archive; returns the image reference."""
        with tarfile.open(archive) as tar:
            def read(name: str) -> bytes:
                return tar.extractfile(name).read()
            index = json.loads(read("index.json"))
            manifest_desc = index["manifests"][0]
            manifest_bytes = read("blobs/sha256/" + manifest_desc["digest"].split(":", 1)[1])
            manifest = json.loads(manifest_bytes)
            for desc in [manifest["config"], *manifest["layers"]]:
                self._push_blob(repository, desc["digest"], read("blobs/sha256/" + desc["digest"].split(":", 1)[1]))
        self._request("PUT", f"/v2/{repository}/manifests/{tag}", data=manifest_bytes,
                      headers={"Content-Type": manifest_desc["mediaType"]})
        return self.ref(repository, tag)

    def has(self, repository: str, tag: str) -> bool:
        try:
            return self._request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={
                "Accept": "application/vnd.oci.image.manifest.v1+json,"
                          "application/vnd.docker.distribution.manifest.v2+json"}).status == 200
        except urllib.error.HTTPError:
            return False

    def _docker(self, *args, input: str | None = None, timeout: float = 1800) -> str:
        proc = subprocess.run(["docker", "--config", str(self.docker_config), *args], input=input, text=True,
                              capture_output=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RegistryError(f"docker {' '.join(args)} -> exit {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def docker_login(self):
        """Let the local Docker daemon trust the bed's CA for this registry (its certs.d, removed by
        stop()) and log in with a client configuration of the bed's own."""
        if self._docker_certs is None:
            d = DOCKER_CERTS / self.host
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.ca, d / "ca.crt")
            self._docker_certs = d
        self.docker_config.mkdir(parents=True, exist_ok=True)
        self._docker("login", "-u", self.user, "--password-stdin", self.host, input=self.password + "\n")

    def push_docker_image(self, image: str, repository: str | None = None, tag: str | None = None) -> str:
        """`docker push` a local image to this registry; returns the reference the pods pull."""
        name, _, own_tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        ref = self.ref(repository or name.split("/")[-1], tag or own_tag)
        self.docker_login()
        self._docker("tag", image, ref)
        try:
            self._docker("push", ref)
        finally:
            with contextlib.suppress(RegistryError):
                self._docker("rmi", ref)
        return ref
