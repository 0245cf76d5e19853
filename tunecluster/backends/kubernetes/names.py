"""Names, labels and mount points of an experiment's Kubernetes objects: what every other module
of the Kubernetes backend refers to the objects by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tunecluster.cluster.plan import RUN_AS_UID
from tunecluster.core import env as role_env

CONFIG_MOUNT = "/etc/tunecluster"
SECRET_MOUNT = "/var/run/secrets/tunecluster"
SHARED_MOUNT = "/shared"
RUN_AS = RUN_AS_UID  # the image's non-root user (see the Dockerfile)
INDEX_VARIABLE = role_env.WORKER_INDEX  # a worker pod's completion index, from its annotation
FIELD_MANAGER = "tunecluster"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"


@dataclass(frozen=True)
class Names:
    experiment: str

    config = property(lambda self: f"{self.experiment}-config")
    secret = property(lambda self: f"{self.experiment}-oracle")
    claim = property(lambda self: f"{self.experiment}-shared")
    chief = property(lambda self: f"{self.experiment}-chief")
    workers = property(lambda self: f"{self.experiment}-workers")
    policy = property(lambda self: f"{self.experiment}-oracle")
    tensorboard = property(lambda self: f"{self.experiment}-tensorboard")

    def code(self, index: int) -> str:
        return f"{self.experiment}-code-{index}"


def labels(experiment: str, role: Optional[str] = None) -> dict[str, str]:
    result = {
        "app.kubernetes.io/name": "tunecluster",
        "app.kubernetes.io/instance": experiment,
        "app.kubernetes.io/managed-by": "tunecluster",
        "tunecluster.io/experiment": experiment,
    }
    if role:
        result["tunecluster.io/role"] = role
    return result


def selector(experiment: str, role: Optional[str] = None) -> str:
    """A label selector string for the experiment's objects (or one role's pods)."""
    parts = [f"tunecluster.io/experiment={experiment}"]
    if role:
        parts.append(f"tunecluster.io/role={role}")
    return ",".join(parts)


def chief_dns_names(names: Names, namespace: str) -> tuple[str, ...]:
    """Every name a worker (or a user in the cluster) may dial the chief by: the names its TLS
    certificate holds, for `up` and `render --include-secret` alike."""
    chief = names.chief
    return ("tunecluster-chief", chief, f"{chief}.{namespace}", f"{chief}.{namespace}.svc",
            f"{chief}.{namespace}.svc.cluster.local")
