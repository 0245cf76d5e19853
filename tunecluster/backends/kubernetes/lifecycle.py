"""An experiment's life in a namespace as `up`, `attach` and `down` see it: what of it is already
there (a chief Job still running or finished, a claim kept by `down --keep-volume`), the one line
that refuses to start over it, the spec it was started with and its files (from its ConfigMap), and the logs of
every pod saved into the run folder before `down` deletes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.backends.kubernetes.pods import pod_role_name, role_pods
from tunecluster.backends.kubernetes.render import CONFIG_MOUNT, Names
from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment, code_refs


@dataclass(frozen=True)
class Presence:
    """What of an experiment exists in a namespace."""

    name: str
    namespace: str
    chief_job: bool = False  # the chief Job exists
    job_state: Optional[str] = None  # "Complete" / "Failed", None while it runs
    started: Optional[datetime] = None  # the chief Job's creation
    claim: bool = False  # its own claim (<name>-shared) exists
    claim_kept: bool = False  # ... and `down --keep-volume` kept it (it holds a search), not `upload` made it
    config: bool = False  # its ConfigMap (the spec) exists

    @property
    def live(self) -> bool:
        return self.chief_job and self.job_state is None

    @property
    def anything(self) -> bool:
        return self.chief_job or self.claim or self.config


def _get(call, *args):
    from kubernetes.client.exceptions import ApiException

    try:
        return call(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def presence(cluster: Cluster, name: str) -> Presence:
    """Read the chief Job, the claim and the ConfigMap of `name` (a missing one is not an error)."""
    names = Names(name)
    ns = cluster.namespace
    try:
        job = _get(cluster.batch.read_namespaced_job, names.chief, ns)
        claim = _get(cluster.core.read_namespaced_persistent_volume_claim, names.claim, ns)
        config = _get(cluster.core.read_namespaced_config_map, names.config, ns)
    except Exception as exc:
        raise explain(exc, f"looking for an earlier experiment {name!r} in namespace {ns}") from None
    state = None
    if job is not None:
        for condition in (job.status.conditions or []) if job.status else []:
            if condition.type in ("Complete", "Failed") and condition.status == "True":
                state = condition.type
    return Presence(name, ns, chief_job=job is not None, job_state=state,
                    started=job.metadata.creation_timestamp if job is not None else None,
                    claim=claim is not None, config=config is not None,
                    claim_kept=claim is not None and KEPT in (claim.metadata.annotations or {}))


def when(moment: Optional[datetime], now: Optional[datetime] = None) -> str:
    """'2026-12-02 06:10 UTC, 14 min ago'."""
    if moment is None:
        return "at an unknown time"
    now = now or datetime.now(timezone.utc)
    minutes = max(0, int((now - moment).total_seconds() // 60))
    ago = f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC, {ago}"


KEPT = "tunecluster.io/kept-by-down"  # on a claim `down --keep-volume` kept: the time it did


def mark_kept(cluster: Cluster, name: str, kept: bool) -> None:
    """Mark the experiment's claim as kept by `down --keep-volume` (or, resumed, no longer)."""
    value = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if kept else None
    try:
        cluster.core.patch_namespaced_persistent_volume_claim(Names(name).claim, cluster.namespace,
                                                              {"metadata": {"annotations": {KEPT: value}}})
    except Exception as exc:
        raise explain(exc, f"marking the volume claim {Names(name).claim}") from None


def start_refusal(found: Presence, *, resume: bool, existing_claim: bool = False) -> Optional[str]:
    """The one line that refuses `up` over what an earlier experiment of the same name left in the
    namespace, or None when `up` may go on (`--resume` continues a live or kept search)."""
    name, ns = found.name, found.namespace
    attach = f"`tunecluster attach {name} -n {ns}`"
    if found.live and not resume:
        return (f"experiment {name} is running in namespace {ns} (started {when(found.started)}): follow it with "
                f"{attach}, resume with --resume, or remove it with `tunecluster down` (from its run folder, "
                f"or after {attach})")
    if found.chief_job and not found.live:
        return (f"experiment {name} already ran in namespace {ns} (chief Job {found.job_state}, started "
                f"{when(found.started)}): see it with {attach}; to run it again remove it first with `tunecluster "
                "down` (--keep-volume keeps its results)")
    if found.claim_kept and not found.chief_job and not resume and not existing_claim:
        return (f"the volume claim {Names(name).claim} in namespace {ns} still holds the search of an earlier "
                f"run of {name} (kept by `down --keep-volume`): continue that search with --resume, or delete "
                f"the claim (`kubectl -n {ns} delete pvc {Names(name).claim}`) to start a new one")
    return None


def resume_note(found: Presence) -> Optional[str]:
    """What `up --resume` goes on from, in one line (None: nothing in the cluster)."""
    if found.live:
        return f"experiment {found.name} is running in namespace {found.namespace}; re-applying it and following it"
    if found.claim_kept and not found.chief_job:
        return f"resuming the search kept on the volume claim {Names(found.name).claim}"
    return None


def cluster_config(cluster: Cluster, name: str) -> tuple[str, dict[str, bytes]]:
    """The spec the experiment's pods run (the ConfigMap's spec.yaml) and the other files the
    ConfigMap carries (the model module, small data); a UsageError naming what to check when the
    experiment is not in the namespace."""
    import base64

    names = Names(name)
    try:
        config = _get(cluster.core.read_namespaced_config_map, names.config, cluster.namespace)
    except Exception as exc:
        raise explain(exc, f"reading the ConfigMap {names.config}") from None
    if config is None or "spec.yaml" not in (config.data or {}):
        found = presence(cluster, name)
        kept = (f"; only its volume claim {names.claim} is left (`down --keep-volume`)" if found.claim else "")
        raise UsageError(f"no experiment {name} in namespace {cluster.namespace} (no ConfigMap {names.config}"
                         f"{kept}); list them with `kubectl get jobs -A -l tunecluster.io/role=chief -L "
                         "tunecluster.io/experiment`, then pass -n NAMESPACE (and --context)")
    files = {key: value.encode() for key, value in config.data.items() if key != "spec.yaml"}
    files.update({key: base64.b64decode(value) for key, value in (config.binary_data or {}).items()})
    return config.data["spec.yaml"], files


def localize(spec: Experiment, carried: Path) -> Experiment:
    """The pods' spec with its references to the ConfigMap's files (`/etc/tunecluster/<file>`)
    pointed at their copies in `carried`, so `up --resume` from an attached folder carries them again."""
    spec = spec.model_copy(deep=True)
    prefix = CONFIG_MOUNT + "/"

    def local(path: str) -> str:
        copy = carried / path[len(prefix):]
        return str(copy) if path.startswith(prefix) and copy.is_file() else path

    for section, attr, _ in code_refs(spec):
        ref = getattr(section, attr)
        if ref and ":" in ref:
            target, func = ref.rsplit(":", 1)
            setattr(section, attr, f"{local(target)}:{func}")
    if spec.data.csv:
        spec.data.csv = local(spec.data.csv)
    return spec


def save_pod_logs(cluster: Cluster, name: str, logs_dir: Path) -> dict[str, list[str]]:
    """Write the log of every pod of the experiment to `logs_dir/<pod>.log`; return the files per
    role name (chief, worker-<i>, ...), oldest first. A pod without a log yet is skipped."""
    saved: dict[str, list[str]] = {}
    for pod in role_pods(cluster, name):
        try:
            text = cluster.core.read_namespaced_pod_log(pod.metadata.name, cluster.namespace)
        except Exception:  # (a pod that never started has no log)
            continue
        logs_dir.mkdir(parents=True, exist_ok=True)
        (logs_dir / f"{pod.metadata.name}.log").write_text(text or "")
        saved.setdefault(pod_role_name(pod), []).append(f"{pod.metadata.name}.log")
    return saved
