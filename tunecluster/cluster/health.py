"""The image's HEALTHCHECK: the chief is healthy when its oracle port accepts a TCP connection;
any other role (a worker) reports healthy.

    python -m tunecluster.cluster.health     # exit code 0: healthy, 1: not

Imports nothing heavy (no TensorFlow, no gRPC): Docker runs it every few seconds.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Mapping

from tunecluster.core import env as role_env


def healthy(environ: Mapping[str, str] = os.environ, timeout: float = 3.0) -> bool:
    if "chief" not in environ.get(role_env.TUNER_ID, ""):
        return True
    try:
        port = int(environ.get(role_env.ORACLE_PORT, ""))
    except ValueError:
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(0 if healthy() else 1)
