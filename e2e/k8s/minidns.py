"""A tiny cluster DNS for the test bed (the role CoreDNS plays in a real cluster), UDP only.

Answers A queries under the cluster domain from the API server's Services and EndpointSlices:
- ``<svc>.<ns>.svc.<domain>``: the ClusterIP, or for a headless Service its ready endpoints;
- ``<hostname>.<svc>.<ns>.svc.<domain>``: an endpoint with that hostname (a pod with
  ``hostname``/``subdomain`` set, e.g. an Indexed Job's pods behind a headless Service);
AAAA for those names gets an empty answer; other cluster names get NXDOMAIN; everything else is
forwarded to the host's resolver.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
import json
import urllib.request
from pathlib import Path

A, AAAA = 1, 28


def _parse_qname(msg: bytes, off: int) -> tuple[str, int]:
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            return ".".join(labels), off + 1
        if n & 0xC0:
            raise ValueError("compressed name in question")
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n


class ClusterDNS:
    def __init__(self, listen_ip: str, api_url: str, ca: Path, cert: Path, key: Path,
                 domain: str = "cluster.local", port: int = 53, upstream: str | None = None):
        self.domain = domain.strip(".").lower()
        self.api_url = api_url
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.ctx.load_cert_chain(str(cert), str(key))
        self.upstream = upstream or self._host_resolver()
        self.records: dict[str, list[str]] = {}
        self.known: set[str] = set()
        self._last_refresh = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((listen_ip, port))
        self.sock.settimeout(0.5)
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._serve, name="minidns", daemon=True),
                         threading.Thread(target=self._refresh_loop, name="minidns-refresh", daemon=True)]

    @staticmethod
    def _host_resolver() -> str | None:
        try:
            for line in Path("/etc/resolv.conf").read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith("127."):
                    return parts[1]
        except OSError:
            pass
        return None

    def start(self):
        self.refresh()
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.sock.close()

    # ------------------------------------------------------------ data
    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.api_url + path, context=self.ctx, timeout=5) as r:
            return json.load(r)

    def refresh(self):
        services = self._get("/api/v1/services")["items"]
        slices = self._get("/apis/discovery.k8s.io/v1/endpointslices")["items"]
        records: dict[str, list[str]] = {}
        known: set[str] = set()
        headless = set()
        for svc in services:
            name = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.{self.domain}"
            known.add(name)
            ip = svc["spec"].get("clusterIP")
            if ip and ip != "None":
                records[name] = [ip]
            else:
                headless.add(name)
        for sl in slices:
            if sl.get("addressType") != "IPv4":
                continue
            svc = sl["metadata"].get("labels", {}).get("kubernetes.io/service-name")
            if not svc:
                continue
            base = f"{svc}.{sl['metadata']['namespace']}.svc.{self.domain}"
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                addrs = ep.get("addresses") or []
                if base in headless:
                    records.setdefault(base, []).extend(a for a in addrs if a not in records.get(base, []))
                if ep.get("hostname"):
                    host = f"{ep['hostname']}.{base}"
                    known.add(host)
                    records[host] = list(addrs)
        with self._lock:
            self.records, self.known = records, known
            self._last_refresh = time.monotonic()

    def _refresh_loop(self):
        while not self._stop.wait(1.0):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - the API server may be going away
                self.errors.append(str(exc))

    # ------------------------------------------------------------ protocol
    def _serve(self):
        while not self._stop.is_set():
            try:
                msg, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                reply = self.answer(msg)
            except Exception as exc:  # noqa: BLE001 - a malformed query: no answer
                self.errors.append(f"query from {peer}: {exc}")
                continue
            if reply:
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def _lookup(self, name: str) -> list[str] | None:
        with self._lock:
            if name in self.records:
                return self.records[name]
            if name in self.known:
                return []
        return None

    def answer(self, msg: bytes) -> bytes | None:
        qid, flags, qd = struct.unpack(">HHH", msg[:6])
        if qd != 1:
            return None
        qname, off = _parse_qname(msg, 12)
        qtype, _qclass = struct.unpack(">HH", msg[off:off + 4])
        question = msg[12:off + 4]
        name = qname.lower().rstrip(".")
        if not (name == self.domain or name.endswith("." + self.domain)):
            return self._forward(msg)
        ips = self._lookup(name)
        if ips is None and time.monotonic() - self._last_refresh > 0.3:
            try:  # a name made a moment ago: look again before saying it does not exist
                self.refresh()
            except Exception:  # noqa: BLE001
                pass
            ips = self._lookup(name)
        rd = flags & 0x0100
        if ips is None:
            return struct.pack(">HHHHHH", qid, 0x8400 | rd | 0x0080 | 3, 1, 0, 0, 0) + question
        answers = b""
        count = 0
        if qtype == A:
            for ip in ips:
                answers += struct.pack(">HHHIH", 0xC00C, A, 1, 5, 4) + socket.inet_aton(ip)
                count += 1
        return struct.pack(">HHHHHH", qid, 0x8400 | rd | 0x0080, 1, count, 0, 0) + question + answers

    def _forward(self, msg: bytes) -> bytes | None:
        if not self.upstream:
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            try:
                s.sendto(msg, (self.upstream, 53))
                return s.recv(4096)
            except OSError:
                return None
