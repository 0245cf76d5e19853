"""The namespaced Role (and RoleBinding) a user needs to run tunecluster: exactly the verbs the
launcher uses (`tunecluster render --rbac`), each with the call that needs it.

- Server-side apply is a PATCH that creates a missing object, so applied kinds need `patch` and
  `create`; `create` (and `list`/`watch` without a name field selector) cannot be limited by
  `resourceNames`, so only get/patch/delete of Secrets are limited, and only when the Role is
  made for named experiments (`role(ns, experiments=[...])`): the Role then reads no Secret of
  the namespace but the experiments' own.
- The exec and port-forward APIs (status, results, pull, tensorboard) are reached with a
  websocket GET, which RBAC checks as `create` (newer servers) or `get` (older ones).
- StorageClasses are cluster-scoped: `up` reads them to choose the access mode when a
  ClusterRole (`storage_cluster_role`) allows it, and falls back to ReadWriteOnce otherwise.
"""

from __future__ import annotations

from typing import Iterable

# (API group, resource) -> verbs, with the launcher call that needs each verb
USES: dict[tuple[str, str], dict[str, str]] = {
    ("", "configmaps"): {"create": "apply", "patch": "apply", "get": "up's check, attach, upload --name",
                         "list": "down", "delete": "down"},
    ("", "secrets"): {"create": "apply", "patch": "apply", "get": "up keeps the token", "delete": "down"},
    ("", "services"): {"create": "apply", "patch": "apply", "list": "down", "delete": "down"},
    ("", "persistentvolumeclaims"): {"create": "apply", "patch": "apply", "get": "pending claim, storage, tensorboard",
                                     "list": "down", "delete": "down"},
    ("", "pods"): {"create": "pull/upload helper", "patch": "pull/upload helper", "get": "pull helper state",
                   "list": "status, follow", "watch": "follow", "delete": "down, helper"},
    ("", "pods/log"): {"get": "logs"},
    ("", "pods/exec"): {"create": "status, results, pull", "get": "exec on older servers"},
    ("", "pods/portforward"): {"create": "tensorboard", "get": "port-forward on older servers"},
    ("", "events"): {"list": "volume and autoscaler events"},
    ("batch", "jobs"): {"create": "apply", "patch": "apply, progress marks", "get": "Kueue queue, re-apply, up's check",
                        "list": "down",
                        "watch": "follow", "delete": "down"},
    ("batch", "jobs/status"): {"get": "job state"},
    ("networking.k8s.io", "networkpolicies"): {"create": "apply", "patch": "apply", "list": "down",
                                               "delete": "down"},
    ("apps", "deployments"): {"create": "apply (tensorboard)", "patch": "apply (tensorboard)",
                              "get": "tensorboard", "list": "down", "delete": "down"},
}
CLUSTER_USES: dict[tuple[str, str], dict[str, str]] = {
    ("storage.k8s.io", "storageclasses"): {"get": "storage_class", "list": "the default StorageClass"},
}
NAMEABLE = {"get", "patch", "update", "delete"}  # verbs RBAC can limit by resourceNames


def secret_names(experiments: Iterable[str]) -> list[str]:
    return sorted(f"{name}-oracle" for name in experiments)


def rules(experiments: Iterable[str] = ()) -> list[dict]:
    """The Role's rules; with experiment names, the Secrets' get/patch/delete only for theirs."""
    names = secret_names(experiments)
    result = []
    for (group, resource), verbs in USES.items():
        if resource == "secrets" and names:
            named = sorted(v for v in verbs if v in NAMEABLE)
            result.append({"apiGroups": [group], "resources": [resource],
                           "verbs": sorted(set(verbs) - set(named))})
            result.append({"apiGroups": [group], "resources": [resource], "resourceNames": names, "verbs": named})
            continue
        result.append({"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)})
    return result


RULES = rules()


def role(namespace: str, name: str = "tunecluster-user", experiments: Iterable[str] = ()) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "tunecluster"}},
            "rules": rules(experiments)}


def role_binding(namespace: str, user: str, name: str = "tunecluster-user") -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "tunecluster"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}


def storage_cluster_role(name: str = "tunecluster-storage-reader") -> dict:
    """Optional: lets `up` read StorageClasses (to choose ReadWriteMany when the class offers it)."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "tunecluster"}},
            "rules": [{"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
                      for (group, resource), verbs in CLUSTER_USES.items()]}


def storage_cluster_role_binding(user: str, name: str = "tunecluster-storage-reader") -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{name}-{user}"[:253], "labels": {"app.kubernetes.io/name": "tunecluster"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}


def grants(role_rules: list[dict], verb: str, group: str, resource: str, name: str | None = None) -> bool:
    """Whether the rules allow `verb` on `group/resource` (and the object `name`, if given)."""
    for rule in role_rules:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            if not rule.get("resourceNames") or (name is not None and name in rule["resourceNames"]):
                return True
    return False
