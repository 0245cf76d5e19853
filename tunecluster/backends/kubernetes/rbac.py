"""The namespaced Role (and RoleBinding) a user needs to run tunecluster: exactly the verbs the
launcher uses (`tunecluster render --rbac`). Server-side apply is a PATCH that may create, so
apply needs both `create` and `patch`; the exec API (status, results, pull) is `pods/exec`,
reached with a websocket GET, which RBAC checks as `create` (and `get` on older servers)."""

from __future__ import annotations

APPLY = ["get", "create", "patch", "delete"]
READ = ["get", "list", "watch"]

RULES = [
    {"apiGroups": [""], "resources": ["configmaps", "secrets", "services", "persistentvolumeclaims"],
     "verbs": sorted(set(APPLY + ["list"]))},
    {"apiGroups": [""], "resources": ["pods"], "verbs": sorted(set(READ + ["create", "delete"]))},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": sorted(set(APPLY + READ))},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": sorted(set(APPLY + ["list"]))},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": sorted(set(APPLY + ["list"]))},
]


def role(namespace: str, name: str = "tunecluster-user") -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "tunecluster"}},
            "rules": RULES}


def role_binding(namespace: str, user: str, name: str = "tunecluster-user") -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "tunecluster"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}
