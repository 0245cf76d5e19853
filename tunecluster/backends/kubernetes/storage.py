"""The shared volume as the cluster provides it, decided at `up` before anything is written: the
StorageClass (named, or the cluster's default) or the existing claim, and from it the access mode.
A ReadWriteOnce volume attaches to one node, so every pod of the experiment is pinned to the node
of the others (render.single_node_affinity) and the user is told so; ReadWriteMany lets workers
spread over nodes.

StorageClasses are cluster-scoped: a user bound only to the namespaced Role may not read them;
then `auto` chooses ReadWriteOnce (works on every cluster) and says how to spread the workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
# provisioners whose volumes can be mounted on several nodes at once (substrings, lowercase)
MANY_NODES = ("nfs", "cephfs", "efs.csi.aws.com", "filestore.csi.storage.gke.io", "file.csi.azure.com",
              "azure-file", "juicefs", "gluster", "lustre", "beegfs", "weka", "spectrumscale", "longhorn")
# provisioners known to give single-node volumes only
ONE_NODE = ("ebs.csi.aws.com", "kubernetes.io/aws-ebs", "pd.csi.storage.gke.io", "kubernetes.io/gce-pd",
            "disk.csi.azure.com", "kubernetes.io/azure-disk", "rancher.io/local-path", "hostpath",
            "openebs.io/local", "topolvm", "kubernetes.io/no-provisioner", "cinder.csi.openstack.org",
            "rbd.csi.ceph.com", "csi.vsphere.vmware.com")
# an administrator's mark on a StorageClass whose provisioner is not in the lists above
ACCESS_MODES_ANNOTATION = "tunecluster.io/access-modes"  # e.g. "ReadWriteMany,ReadWriteOnce"
SPREAD_HINT = ("for workers on several nodes set cluster.kubernetes.access_mode: ReadWriteMany and a "
               "storage_class that provides it (NFS, CephFS, EFS, Filestore, Azure Files)")


@dataclass(frozen=True)
class StorageDecision:
    """The access mode the experiment uses, where it came from, and what to tell the user."""

    access_mode: str  # ReadWriteMany or ReadWriteOnce
    source: str  # e.g. "StorageClass standard (rancher.io/local-path)" or "claim team-data"
    message: Optional[str] = None

    def apply(self, spec: Experiment) -> Experiment:
        spec = spec.model_copy(deep=True)
        spec.cluster.kubernetes.access_mode = self.access_mode
        return spec


def _known(provisioner: str, names: tuple) -> bool:
    lowered = provisioner.lower()
    return any(name in lowered for name in names)


def _pinned_message(source: str, why: str) -> str:
    return (f"the shared volume is ReadWriteOnce ({source}{why}): every pod of the experiment runs on the "
            f"node of the chief (pod affinity); {SPREAD_HINT}")


def decide_for_claim(claim, requested: str) -> StorageDecision:
    """An existing claim's modes decide (a claim cannot change them)."""
    name = claim.metadata.name
    modes = list((claim.status.access_modes if claim.status else None) or claim.spec.access_modes or [])
    if "ReadWriteMany" in modes:
        return StorageDecision("ReadWriteMany", f"claim {name}")
    if modes == ["ReadWriteOncePod"]:
        raise UsageError(f"cluster.kubernetes.existing_claim {name} is ReadWriteOncePod: only one pod may mount it, "
                         "and an experiment has a chief and workers; use a ReadWriteOnce or ReadWriteMany claim")
    why = "; asked ReadWriteMany but the claim has " + ",".join(modes) if requested == "ReadWriteMany" else ""
    return StorageDecision("ReadWriteOnce", f"claim {name}", _pinned_message(f"claim {name}", why))


def decide_for_class(storage_class, requested: str) -> StorageDecision:
    """A StorageClass's provisioner decides `auto`; a ReadWriteMany request on a class known to give
    single-node volumes is refused (the claim would stay Pending)."""
    name, provisioner = storage_class.metadata.name, storage_class.provisioner or "?"
    source = f"StorageClass {name}, provisioner {provisioner}"
    if requested == "ReadWriteMany":
        if _known(provisioner, ONE_NODE):
            raise UsageError(f"cluster.kubernetes.access_mode is ReadWriteMany but the {source} gives single-node "
                             "(ReadWriteOnce) volumes, so the claim would stay Pending; set access_mode: auto or "
                             "ReadWriteOnce (every pod on one node), or a storage_class that provides ReadWriteMany")
        return StorageDecision("ReadWriteMany", source)
    if requested == "ReadWriteOnce":
        return StorageDecision("ReadWriteOnce", source, _pinned_message(source, ""))
    marked = (storage_class.metadata.annotations or {}).get(ACCESS_MODES_ANNOTATION, "")
    if "ReadWriteMany" in marked.replace(" ", "").split(","):
        return StorageDecision("ReadWriteMany", f"{source}, marked {ACCESS_MODES_ANNOTATION}")
    if _known(provisioner, MANY_NODES):
        return StorageDecision("ReadWriteMany", source)
    return StorageDecision("ReadWriteOnce", source, _pinned_message(source, "; its provisioner is not known to "
                                                                    "provide ReadWriteMany: an administrator "
                                                                    f"can annotate the class {ACCESS_MODES_ANNOTATION}"
                                                                    "=ReadWriteMany"))


def default_class(classes: list) -> Optional[object]:
    marked = [c for c in classes if ((c.metadata.annotations or {}).get(DEFAULT_CLASS) == "true"
                                     or (c.metadata.annotations or {}).get(
                                         "storageclass.beta.kubernetes.io/is-default-class") == "true")]
    return sorted(marked, key=lambda c: c.metadata.name)[0] if marked else None


def decide_storage(cluster: Cluster, spec: Experiment) -> StorageDecision:
    """Read the claim or StorageClass the experiment will use and decide its access mode."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    k8s = spec.cluster.kubernetes
    requested = k8s.access_mode
    if k8s.existing_claim:
        try:
            claim = cluster.core.read_namespaced_persistent_volume_claim(k8s.existing_claim, cluster.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise UsageError(f"cluster.kubernetes.existing_claim {k8s.existing_claim} is not in namespace "
                                 f"{cluster.namespace}; create it, pick another namespace, or drop existing_claim "
                                 "to get a new volume") from None
            raise explain(exc, f"reading the claim {k8s.existing_claim}") from None
        return decide_for_claim(claim, requested)
    storage = client.StorageV1Api(cluster.api)
    try:
        if k8s.storage_class:
            chosen = storage.read_storage_class(k8s.storage_class)
        else:
            chosen = default_class(storage.list_storage_class().items)
    except ApiException as exc:
        if exc.status == 404:
            raise UsageError(f"cluster.kubernetes.storage_class {k8s.storage_class} does not exist; pick one of "
                             "`kubectl get storageclass`") from None
        if exc.status != 403:
            raise explain(exc, "reading the StorageClass") from None
        if requested != "auto":
            return StorageDecision(requested, "as asked", _pinned_message("as asked", "")
                                   if requested == "ReadWriteOnce" else None)
        return StorageDecision("ReadWriteOnce", "StorageClasses not readable",
                               "cannot read the cluster's StorageClasses (they need a ClusterRole: `tunecluster render --rbac "
                               "--storage-reader` prints one), so the shared volume is ReadWriteOnce and every pod of the "
                               f"experiment runs on the chief's node; {SPREAD_HINT}")
    if chosen is None:  # the claim binds only to a PersistentVolume an administrator made
        note = ("the cluster has no default StorageClass: the volume claim binds only to a matching "
                "PersistentVolume made by an administrator (or set cluster.kubernetes.storage_class)")
        mode = "ReadWriteOnce" if requested == "auto" else requested
        return StorageDecision(mode, "no StorageClass", _pinned_message("no StorageClass", "") + "; " + note
                               if mode == "ReadWriteOnce" else note)
    return decide_for_class(chosen, requested)
