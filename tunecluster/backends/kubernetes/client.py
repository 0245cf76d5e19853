"""Connecting to a Kubernetes API server (kubeconfig context, or in-cluster config inside a pod)
and turning its errors into one line that says what to do."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Optional

from tunecluster.core.errors import RunFailure, TuneclusterError, UsageError


@dataclass
class Cluster:
    """The clients of one connection, and the namespace the experiment lives in."""

    api: object  # kubernetes.client.ApiClient
    namespace: str
    context: Optional[str]
    server: str

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api)

    @property
    def batch(self):
        from kubernetes import client

        return client.BatchV1Api(self.api)

    @property
    def dynamic(self):
        from kubernetes.dynamic import DynamicClient

        if not hasattr(self, "_dynamic"):
            self._dynamic = DynamicClient(self.api)
        return self._dynamic


def connect(context: Optional[str] = None, namespace: Optional[str] = None,
            kubeconfig: Optional[str] = None) -> Cluster:
    """Load the kubeconfig (or the in-cluster config when running in a pod without one)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    in_cluster = not os.path.exists(path.split(os.pathsep)[0]) and os.environ.get("KUBERNETES_SERVICE_HOST")
    default_ns = "default"
    if not in_cluster and not os.path.exists(path.split(os.pathsep)[0]):
        raise UsageError(f"no kubeconfig: {path} does not exist; set KUBECONFIG or --kubeconfig to your "
                         "cluster's kubeconfig (or run inside a pod with a service account)")
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
            try:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
                    default_ns = handle.read().strip() or default_ns
            except OSError:
                pass
        else:
            config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
            contexts, active = config.list_kube_config_contexts(config_file=path)
            chosen = next((c for c in contexts if c["name"] == context), active) if context else active
            default_ns = ((chosen or {}).get("context") or {}).get("namespace") or default_ns
    except (ConfigException, FileNotFoundError) as exc:
        where = "the in-cluster service account" if in_cluster else path
        raise UsageError(
            f"no usable Kubernetes configuration ({where}: {str(exc).splitlines()[0]}); set KUBECONFIG "
            "or --kubeconfig, or pick a context with --context (kubectl config get-contexts)"
        ) from None
    api = client.ApiClient(configuration)
    return Cluster(api, namespace or default_ns, context, configuration.host)


_FORBIDDEN = re.compile(r'cannot (\w+) resource "([^"]+)"(?: in API group "([^"]*)")?')


def forbidden(exc: Exception, verb: str, resource: str, namespace: str) -> Optional[UsageError]:
    """The error for a 401/403 answer to `verb` on `resource` (None for any other exception)."""
    status = getattr(exc, "status", None)
    if status == 0 and "403" in str(getattr(exc, "reason", "")):
        status = 403  # a websocket (exec, port-forward) refused at the handshake
    if status == 403:
        return UsageError(f"the Kubernetes user may not {verb} {resource} in namespace {namespace}: add it to the "
                          "Role (`tunecluster render --rbac`)")
    if status == 401:
        return UsageError("the API server rejected the kubeconfig's credentials; log in again or pick another "
                          "--context")
    return None


def explain(exc: Exception, doing: str) -> TuneclusterError:
    """One line for an API error (or a connection error) that happened while `doing` something."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return RunFailure(f"cannot reach the Kubernetes API server while {doing} ({text}); check the "
                          "kubeconfig's server address and that the cluster runs")
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason
    if exc.status == 401:
        return UsageError(f"the API server rejected the kubeconfig's credentials while {doing}; log in again "
                          "or pick another --context")
    if exc.status == 403 and "exceeded quota" in (message or ""):
        return RunFailure(f"quota exceeded while {doing}: {message}; lower cluster.workers or the "
                          "resources in cluster.kubernetes, or ask for more quota")
    if exc.status == 403:
        found = _FORBIDDEN.search(message or "")
        what = (f"the verb '{found.group(1)}' on '{found.group(2)}'"
                + (f" (API group '{found.group(3)}')" if found and found.group(3) else "")) if found else "a permission"
        return UsageError(f"forbidden while {doing}: you lack {what}; `tunecluster render --rbac` prints the "
                          f"Role with every verb tunecluster needs ({message})")
    if exc.status == 404 and "namespaces" in (message or ""):
        return UsageError(f"{message}; create the namespace or pass --namespace")
    if exc.status == 422:
        return UsageError(f"the API server refused an object while {doing}: {message}")
    return RunFailure(f"the API server answered {exc.status} ({exc.reason}) while {doing}: {message}")
