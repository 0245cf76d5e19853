"""Per-role additions to the Kubernetes pods (`cluster.kubernetes.pod_overrides.<chief|workers|
tensorboard>`) and tolerations, validated with one-line messages that say what to change. A role's
node_selector / tolerations, when given (even empty), replace the global ones for that role."""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Toleration(_Section):
    key: Optional[str] = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: Optional[str] = None
    effect: Optional[Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]] = None


_RESERVED_VOLUMES = {"tmp", "shared", "config", "oracle", "code", "code-parts"}  # what tunecluster mounts
_RESERVED_PATHS = ("/tmp", "/shared", "/etc/tunecluster", "/var/run/secrets/tunecluster", "/code")
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"


class RoleOverrides(_Section):
    """What one role's pods add to (or, for node_selector and tolerations, put in place of) what
    tunecluster renders: `cluster.kubernetes.pod_overrides.<chief|workers|tensorboard>`."""

    node_selector: Optional[dict[str, str]] = Field(
        None, description="Replaces cluster.kubernetes.node_selector for this role ({} = none).")
    tolerations: Optional[list[Toleration]] = Field(
        None, description="Replace cluster.kubernetes.tolerations for this role ([] = none).")
    affinity: Optional[dict[str, Any]] = Field(
        None, description="A pod affinity as in Kubernetes (nodeAffinity, podAffinity, podAntiAffinity).")
    priority_class_name: Optional[str] = None
    annotations: dict[str, str] = Field(default_factory=dict, description="Added to the pods.")
    labels: dict[str, str] = Field(default_factory=dict, description="Added to the pods (not tunecluster.io/*).")
    env: dict[str, str] = Field(default_factory=dict, description="Added to the container's environment.")
    volumes: list[dict[str, Any]] = Field(default_factory=list, description="Kubernetes volumes added to the pods.")
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list, description="Mounts of those volumes in the container (name, mountPath, readOnly).")

    @field_validator("affinity")
    @classmethod
    def _affinity_keys(cls, value):
        allowed = {"nodeAffinity", "podAffinity", "podAntiAffinity"}
        if value is not None and not set(value) <= allowed:
            raise ValueError(f"affinity takes {', '.join(sorted(allowed))} (Kubernetes' camelCase keys); "
                             f"got {', '.join(sorted(set(value) - allowed))}")
        return value

    @field_validator("priority_class_name")
    @classmethod
    def _priority(cls, value):
        if value is not None and not re.fullmatch(_DNS_SUBDOMAIN, value):
            raise ValueError("name an existing PriorityClass (lowercase letters, digits, '-' and '.')")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value):
        for key, label in value.items():
            if key.startswith(("tunecluster.io/", "app.kubernetes.io/", "batch.kubernetes.io/")) or \
                    key in ("job-name", "controller-uid", "kueue.x-k8s.io/queue-name"):
                raise ValueError(f"label {key!r} is set by tunecluster, Kubernetes or queue_name; pick another key")
            if not re.fullmatch(r"(([a-z0-9.-]{1,253})/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", key) or \
                    not re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", label):
                raise ValueError(f"label {key}: {label!r} is not a valid Kubernetes label (key and value: "
                                 "letters, digits, '-', '_', '.', at most 63 characters)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value):
        for name in value:
            if not re.fullmatch(_ENV_NAME, name):
                raise ValueError(f"env {name!r}: not a valid variable name")
            if name.startswith(("KERASTUNER_", "TUNECLUSTER_")) or name in ("PYTHONPATH", "HOME", "JOB_COMPLETION_INDEX"):
                raise ValueError(f"env {name!r} is set by tunecluster (the role's wiring); set the matching "
                                 "spec field instead, or use another name")
        return value

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value):
        for volume in value:
            name = volume.get("name") if isinstance(volume, dict) else None
            if not name or not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", str(name)):
                raise ValueError("every volume needs a name (a DNS label) and one source, e.g. "
                                 "{name: datasets, persistentVolumeClaim: {claimName: team-data}}")
            if name in _RESERVED_VOLUMES:
                raise ValueError(f"volume name {name!r} is used by tunecluster ({', '.join(sorted(_RESERVED_VOLUMES))}); "
                                 "rename it")
            if len(volume) < 2:
                raise ValueError(f"volume {name!r} has no source (persistentVolumeClaim, nfs, configMap, ...)")
        return value

    @model_validator(mode="after")
    def _mounts_match_volumes(self):
        names = {v["name"] for v in self.volumes}
        for mount in self.volume_mounts:
            if not isinstance(mount, dict) or not mount.get("name") or not mount.get("mountPath"):
                raise ValueError("every volume_mounts entry needs name and mountPath")
            if mount["name"] not in names:
                raise ValueError(f"volume_mounts: {mount['name']!r} is not in this role's volumes; add it there")
            path = str(mount["mountPath"]).rstrip("/")
            if not path.startswith("/") or any(path == p or path.startswith(p + "/") or p.startswith(path + "/")
                                               for p in _RESERVED_PATHS):
                raise ValueError(f"volume_mounts: mountPath {mount['mountPath']!r} must be absolute and outside "
                                 f"{', '.join(_RESERVED_PATHS)} (tunecluster's mounts)")
        return self


class PodOverrides(_Section):
    """Per-role additions to the rendered pods (see RoleOverrides)."""

    chief: RoleOverrides = Field(default_factory=RoleOverrides)
    workers: RoleOverrides = Field(default_factory=RoleOverrides)
    tensorboard: RoleOverrides = Field(default_factory=RoleOverrides)
