"""The test bed's shared network filesystem (the ReadWriteMany storage every node mounts).

The kernel of these machines has no NFS client, but has FUSE. So: the host serves a folder over
SFTP (OpenSSH's ``sftp-server``, one per connection, on 10.250.0.1; the bed's private bridge only,
no SSH layer: sshfs's ``directport`` speaks SFTP straight over TCP), and every node FUSE-mounts it
with ``sshfs`` at the same path inside its own mount namespace. A volume of the StorageClass
``tunecluster-rwx`` is a folder of that filesystem (made by ``tools/sharedfs-provisioner``), so
what a pod on node A writes a pod on node B reads, through node B's own mount.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import subprocess
import threading
from pathlib import Path

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
# No caching: a file one node writes is seen at once by the others (and by the test on the host).
MOUNT_OPTIONS = ("allow_other,reconnect,dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0,"
                 "ServerAliveInterval=5")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SftpServer:
    """Serves `root` over SFTP on ip:port, one sftp-server process per connection."""

    def __init__(self, root: Path, ip: str, port: int):
        self.root, self.ip, self.port = Path(root), ip, port
        self.root.mkdir(parents=True, exist_ok=True)
        self.connections: list[subprocess.Popen] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock: socket.socket = self.request
                proc = subprocess.Popen([SFTP_SERVER, "-d", str(outer.root)], stdin=sock.fileno(),
                                        stdout=sock.fileno(), stderr=subprocess.DEVNULL, start_new_session=True)
                outer.connections.append(proc)
                proc.wait()

        self._server = _Server((ip, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="sharedfs-sftp", daemon=True)

    def start(self) -> "SftpServer":
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        for proc in self.connections:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def mount_command(self, mount_point: Path) -> list[str]:
        """sshfs in the foreground, mounting the shared folder at mount_point."""
        return ["sshfs", "-f", "-o", f"directport={self.port},{MOUNT_OPTIONS}", f"{self.ip}:{self.root}",
                str(mount_point)]
