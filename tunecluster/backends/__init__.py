"""Where an experiment's cluster runs: one interface (`base.Backend`) and one package per backend.

    local/        the chief and workers as processes on this machine
    compose/      containers under docker compose (v2 or v1), one named volume
    kubernetes/   plain Jobs, a Service, a volume claim, a Secret and a NetworkPolicy

`get_backend(name)` and `backend_of_run(run)` are the only ways the CLI reaches them; each is
imported only when used (a local run never imports the Kubernetes client). No backend imports
another (an import-linter contract keeps it so).
"""

from __future__ import annotations

import importlib

from tunecluster.backends.base import Backend
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, read_json

NAMES = ("local", "compose", "kubernetes")
_CLASSES = {"local": "tunecluster.backends.local.backend:LocalBackend",
            "compose": "tunecluster.backends.compose.backend:ComposeBackend",
            "kubernetes": "tunecluster.backends.kubernetes.backend:KubernetesBackend"}


def get_backend(name: str) -> Backend:
    """A fresh backend object for `name` (local, compose or kubernetes)."""
    if name not in _CLASSES:
        raise UsageError(f"unknown backend {name!r}; use one of {', '.join(NAMES)}")
    module, _, cls = _CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def backend_of_run(run: RunDir) -> Backend:
    """The backend that `up` recorded in the run folder's cluster.json (local when none is)."""
    return get_backend((read_json(run.cluster) or {}).get("backend", "local"))
