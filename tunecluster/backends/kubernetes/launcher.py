"""The Kubernetes backend: apply an experiment's objects (server-side apply, field manager
`tunecluster`), wait for the chief with a watch, follow the search live from the chief's state on
the volume, and `status`, `logs`, `results`, `pull` and `down` through the API.

The local run directory (`--dir`) holds the spec, `cluster.json` (backend, namespace, context) and
copies of the chief's `progress.json` / `results.json`, read through the exec API, so the live
view and `tunecluster results` work as for the local backend.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import tarfile
import time
from pathlib import Path
from typing import Callable, Optional

from tunecluster.core.rundir import RunDir, read_json, write_json
from tunecluster.core.errors import RunFailure, UsageError
from tunecluster.backends.kubernetes.client import Cluster, explain
from tunecluster.backends.kubernetes.render import FIELD_MANAGER, SHARED_MOUNT, Names, helper_pod, render, selector
from tunecluster.tuning.spec import Experiment

IMAGE_PROBLEMS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


# --- applying and deleting ----------------------------------------------------------------------
def apply_objects(cluster: Cluster, objects: list[dict]) -> None:
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        try:
            resource = cluster.dynamic.resources.get(api_version=obj["apiVersion"], kind=kind)
            resource.server_side_apply(body=obj, name=name, namespace=obj["metadata"].get("namespace"),
                                       field_manager=FIELD_MANAGER, force_conflicts=True)
        except Exception as exc:
            raise explain(exc, f"applying {kind} {name}") from None


def _secret_material(cluster: Cluster, spec: Experiment) -> tuple[str, Optional[tuple[bytes, bytes]]]:
    """Keep the token (and certificate) of an existing experiment: a re-applied Secret must not
    lock out running workers. Otherwise make new ones."""
    from kubernetes.client.exceptions import ApiException

    names = Names(spec.name)
    try:
        secret = cluster.core.read_namespaced_secret(names.secret, cluster.namespace)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        token = data["token"].decode()
        tls = (data["tls.crt"], data["tls.key"]) if "tls.crt" in data else None
    except ApiException as exc:
        if exc.status != 404:
            raise explain(exc, "reading the oracle token") from None
        token, tls = secrets.token_urlsafe(32), None
    except KeyError:
        token, tls = secrets.token_urlsafe(32), None
    if spec.cluster.tls and tls is None:
        from tunecluster.cluster.security import make_certificate

        ns = cluster.namespace
        tls = make_certificate(("tunecluster-chief", names.chief, f"{names.chief}.{ns}",
                                f"{names.chief}.{ns}.svc", f"{names.chief}.{ns}.svc.cluster.local"))
    return token, tls


def experiment_objects(cluster: Cluster, spec: Experiment, tensorboard: Optional[bool] = None) -> list[dict]:
    token, tls = _secret_material(cluster, spec)
    return render(spec, namespace=cluster.namespace, token=token, tls=tls, tensorboard=tensorboard)


def delete_experiment(cluster: Cluster, experiment: str, *, keep_volume: bool, timeout: float = 120) -> list[str]:
    """Delete every object labelled with the experiment (the claim too unless `keep_volume`)."""
    from kubernetes import client

    ns = cluster.namespace
    sel = selector(experiment)
    core, batch = cluster.core, cluster.batch
    networking, apps = client.NetworkingV1Api(cluster.api), client.AppsV1Api(cluster.api)
    kinds: list[tuple[str, Callable, Callable]] = [
        ("Job", batch.list_namespaced_job, lambda n: batch.delete_namespaced_job(
            n, ns, propagation_policy="Background")),
        ("Deployment", apps.list_namespaced_deployment, lambda n: apps.delete_namespaced_deployment(n, ns)),
        ("Pod", core.list_namespaced_pod, lambda n: core.delete_namespaced_pod(n, ns, grace_period_seconds=5)),
        ("Service", core.list_namespaced_service, lambda n: core.delete_namespaced_service(n, ns)),
        ("NetworkPolicy", networking.list_namespaced_network_policy,
         lambda n: networking.delete_namespaced_network_policy(n, ns)),
        ("ConfigMap", core.list_namespaced_config_map, lambda n: core.delete_namespaced_config_map(n, ns)),
        ("Secret", core.list_namespaced_secret, lambda n: core.delete_namespaced_secret(n, ns)),
    ]
    if not keep_volume:
        kinds.append(("PersistentVolumeClaim", core.list_namespaced_persistent_volume_claim,
                      lambda n: core.delete_namespaced_persistent_volume_claim(n, ns)))
    deleted = []
    from kubernetes.client.exceptions import ApiException

    for kind, lister, deleter in kinds:
        try:
            for item in lister(ns, label_selector=sel).items:
                try:
                    deleter(item.metadata.name)
                    deleted.append(f"{kind}/{item.metadata.name}")
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        except Exception as exc:
            raise explain(exc, f"deleting the experiment's {kind} objects") from None
    # wait until the pods are gone, so a new `up` of the same name starts clean
    deadline = time.time() + timeout
    while time.time() < deadline:
        pods = core.list_namespaced_pod(ns, label_selector=sel).items
        jobs = batch.list_namespaced_job(ns, label_selector=sel).items
        if not pods and not jobs:
            break
        _watch_once(cluster, "pods", sel, 2)
    return deleted


def _watch_once(cluster: Cluster, what: str, sel: str, seconds: int) -> list:
    """Block on a watch of the experiment's pods (or jobs) for up to `seconds`; return the events."""
    from kubernetes import watch

    lister = cluster.core.list_namespaced_pod if what == "pods" else cluster.batch.list_namespaced_job
    events = []
    stream = watch.Watch()
    try:
        for event in stream.stream(lister, cluster.namespace, label_selector=sel, timeout_seconds=seconds,
                                   _request_timeout=seconds + 5):
            events.append(event)
            if len(events) > 50:
                break
    except Exception:
        pass
    finally:
        stream.stop()
    return events


# --- pods -------------------------------------------------------------------------------------------
def pod_problem(pod) -> Optional[str]:
    """A pod state a user must act on (image, scheduling, configuration), or None."""
    name = pod.metadata.name
    for status in (pod.status.container_statuses or []) + (pod.status.init_container_statuses or []):
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason in IMAGE_PROBLEMS:
            return (f"pod {name}: the image {status.image} cannot be pulled ({waiting.reason}: "
                    f"{(waiting.message or '').strip()[:300]}); build and push it, or set cluster.kubernetes.image "
                    "(and image_pull_policy)")
        if waiting and waiting.reason == "CreateContainerConfigError":
            return f"pod {name}: {waiting.message}"
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
            return (f"pod {name} cannot be scheduled: {condition.message} (no node offers what the pod asks "
                    "for: GPUs, CPU/memory, node_selector, tolerations, or an unbound volume claim)")
    return None


SCHEDULING_GRACE = 90.0  # s: a volume being provisioned, a node being added; then it is a real problem


class ProblemClock:
    """Reports a pod problem at once, except scheduling problems, which often clear by themselves
    (a claim being bound, an autoscaler adding a node): those only after they last `grace` s."""

    def __init__(self, grace: float = SCHEDULING_GRACE):
        self.grace = grace
        self.first_seen: dict[str, float] = {}

    def check(self, pod) -> Optional[str]:
        problem = pod_problem(pod)
        key = pod.metadata.name
        if problem is None:
            self.first_seen.pop(key, None)
            return None
        if "cannot be scheduled" not in problem:
            return problem
        first = self.first_seen.setdefault(key, time.time())
        return problem if time.time() - first >= self.grace else None


def role_pods(cluster: Cluster, experiment: str, role: Optional[str] = None) -> list:
    try:
        pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=selector(experiment, role)).items
    except Exception as exc:
        raise explain(exc, "listing the experiment's pods") from None
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp)


def pod_role_name(pod) -> str:
    role = (pod.metadata.labels or {}).get("tunecluster.io/role", "?")
    index = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-completion-index") or \
        (pod.metadata.annotations or {}).get("batch.kubernetes.io/job-completion-index")
    return f"worker-{index}" if role == "worker" and index is not None else role


def find_pod(cluster: Cluster, experiment: str, role_name: str):
    """The newest pod of `chief` or `worker-<i>`."""
    role = "chief" if role_name == "chief" else "worker" if role_name.startswith("worker-") else None
    if role is None:
        raise UsageError(f"role {role_name!r}: use chief or worker-<i> (e.g. worker-0)")
    pods = [p for p in role_pods(cluster, experiment, role) if pod_role_name(p) == role_name]
    if not pods:
        raise UsageError(f"no pod for {role_name} of {experiment!r} in namespace {cluster.namespace}")
    return pods[-1]


def exec_read(cluster: Cluster, pod_name: str, command: list[str], timeout: float = 30) -> str:
    from kubernetes.stream import stream

    return stream(cluster.core.connect_get_namespaced_pod_exec, pod_name, cluster.namespace,
                  command=command, stderr=False, stdin=False, stdout=True, tty=False,
                  _request_timeout=timeout)


def read_shared_json(cluster: Cluster, pod_name: str, name: str) -> Optional[dict]:
    try:
        text = exec_read(cluster, pod_name, ["cat", f"{SHARED_MOUNT}/{name}"])
        return json.loads(text) if text and text.strip().startswith("{") else None
    except Exception:
        return None


# --- up -----------------------------------------------------------------------------------------------
def wait_for_chief(cluster: Cluster, spec: Experiment, timeout: float = 300) -> str:
    """Watch the chief's pod until it is ready; fail fast on image/scheduling problems."""
    deadline = time.time() + timeout
    sel = selector(spec.name, "chief")
    clock = ProblemClock()
    while time.time() < deadline:
        for pod in role_pods(cluster, spec.name, "chief"):
            problem = clock.check(pod)
            if problem:
                raise RunFailure(_pending_claim(cluster, spec) or problem)
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            if ready:
                return pod.metadata.name
        _watch_once(cluster, "pods", sel, 5)
    claim = _pending_claim(cluster, spec)
    if claim:
        raise RunFailure(claim)
    raise RunFailure(f"the chief pod of {spec.name!r} was not ready within {timeout:.0f} s; "
                     f"see `tunecluster status` and `tunecluster logs chief`")


def _pending_claim(cluster: Cluster, spec: Experiment) -> Optional[str]:
    k8s = spec.cluster.kubernetes
    name = k8s.existing_claim or Names(spec.name).claim
    try:
        claim = cluster.core.read_namespaced_persistent_volume_claim(name, cluster.namespace)
    except Exception:
        return None
    if claim.status.phase == "Bound":
        return None
    return (f"the volume claim {name} is still {claim.status.phase}: no volume was provisioned; set "
            f"cluster.kubernetes.storage_class to a class that provides {k8s.access_mode} volumes "
            "(or ReadWriteOnce on a single node), or give cluster.kubernetes.existing_claim")


def job_state(cluster: Cluster, name: str) -> Optional[str]:
    """'Complete', 'Failed' or None (running) for a Job."""
    try:
        job = cluster.batch.read_namespaced_job_status(name, cluster.namespace)
    except Exception:
        return None
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition.type
    return None


class Follower:
    """Mirrors the chief's progress into the local run directory and watches for problems."""

    def __init__(self, cluster: Cluster, spec: Experiment, run: RunDir):
        self.cluster, self.spec, self.run = cluster, spec, run
        self.names = Names(spec.name)
        self.outcome: Optional[str] = None
        self.problem: Optional[str] = None
        self.refreshed = False
        self.clock = ProblemClock()

    def refresh(self) -> None:
        from tunecluster.tuning.results import to_csv

        chief = [p for p in role_pods(self.cluster, self.spec.name, "chief") if p.status.phase == "Running"]
        self.refreshed = False
        if chief:
            for name, path in (("progress.json", self.run.progress), ("results.json", self.run.results_json)):
                document = read_shared_json(self.cluster, chief[-1].metadata.name, name)
                if document is not None:
                    write_json(path, document)
                    self.refreshed = True
                    if name == "results.json":
                        self.run.results_csv.write_text(to_csv(document))

    def alive(self) -> bool:
        _watch_once(self.cluster, "pods", selector(self.spec.name), 1)  # wakes early on any pod change
        for pod in role_pods(self.cluster, self.spec.name):
            problem = self.clock.check(pod) if pod.status.phase == "Pending" else None
            if problem:
                self.problem = problem
                return False
        self.refresh()
        self.outcome = job_state(self.cluster, self.names.chief)
        return self.outcome is None


def up_kubernetes(spec: Experiment, run: RunDir, cluster: Cluster, *, console, detach: bool = False,
                  tensorboard: Optional[bool] = None) -> int:
    from tunecluster.ui.live import LiveView

    objects = experiment_objects(cluster, spec, tensorboard)
    write_json(run.cluster, {"backend": "kubernetes", "experiment": spec.name, "namespace": cluster.namespace,
                             "context": cluster.context, "server": cluster.server,
                             "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in objects]})
    console.print(f"tunecluster: {spec.name} ({spec.tuner.kind}, {spec.tuner.max_trials} trials, "
                  f"{spec.cluster.workers} workers) in namespace {cluster.namespace} on {cluster.server}",
                  highlight=False)
    apply_objects(cluster, objects)
    console.print("applied: " + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects), highlight=False)
    chief = wait_for_chief(cluster, spec)
    console.print(f"chief ready ({chief})", highlight=False)
    if detach:
        console.print(f"detached; follow with `tunecluster status --dir {run.root}`", highlight=False)
        return 0
    follower = Follower(cluster, spec, run)
    started = time.time()
    try:
        LiveView(run, console).follow(follower.alive)
    except KeyboardInterrupt:
        console.print("\ninterrupted: the experiment keeps running in the cluster; follow it with "
                      f"`tunecluster status --dir {run.root}`, stop it with `tunecluster down --dir {run.root}`",
                      highlight=False)
        return 130
    if follower.problem:
        raise RunFailure(follower.problem)
    follower.refresh()
    progress = read_json(run.progress) or {}
    if follower.outcome == "Complete" and not progress.get("finished"):
        # the chief wrote its final state and left before it could be mirrored through its pod:
        # read the final files from the volume
        pull(cluster, spec, run.root, require_model=False,
             names=("progress.json", "results.json", "results.csv"))
        progress = read_json(run.progress) or {}
    console.print(f"search ended in {time.time() - started:.1f} s (chief job {follower.outcome})", highlight=False)
    if progress.get("search_failed"):
        raise RunFailure(f"the search stopped: {progress['search_failed']}")
    if (progress.get("export") or {}).get("state") == "failed":
        raise RunFailure(f"exporting the best model failed: {progress['export'].get('message')}")
    if follower.outcome != "Complete" or not progress.get("finished"):
        raise RunFailure(f"the chief job ended {follower.outcome or 'without finishing'}; "
                         f"see `tunecluster logs chief --dir {run.root}`")
    return 0


# --- status, logs, pull ---------------------------------------------------------------------------
def status(cluster: Cluster, experiment: str) -> dict:
    pods = []
    for pod in role_pods(cluster, experiment):
        restarts = sum(s.restart_count for s in pod.status.container_statuses or [])
        pods.append({"name": pod_role_name(pod), "pod": pod.metadata.name, "phase": pod.status.phase,
                     "restarts": restarts, "node": pod.spec.node_name, "problem": pod_problem(pod)})
    return {"pods": pods, "chief_job": job_state(cluster, Names(experiment).chief),
            "workers_job": job_state(cluster, Names(experiment).workers)}


def logs(cluster: Cluster, experiment: str, role_name: str, *, tail: Optional[int], follow: bool, out) -> None:
    pod = find_pod(cluster, experiment, role_name)
    try:
        if follow:
            response = cluster.core.read_namespaced_pod_log(pod.metadata.name, cluster.namespace, follow=True,
                                                            tail_lines=tail, _preload_content=False)
            for chunk in response.stream():
                out.write(chunk.decode(errors="replace"))
                out.flush()
        else:
            out.write(cluster.core.read_namespaced_pod_log(pod.metadata.name, cluster.namespace, tail_lines=tail))
    except Exception as exc:
        raise explain(exc, f"reading the log of {role_name}") from None


PULL_SCRIPT = (
    "import base64,io,os,sys,tarfile\n"
    "buf=io.BytesIO()\n"
    "with tarfile.open(fileobj=buf,mode='w:gz') as tar:\n"
    "    for name in sys.argv[1:]:\n"
    "        path=os.path.join('" + SHARED_MOUNT + "',name)\n"
    "        if os.path.exists(path): tar.add(path,arcname=name)\n"
    "sys.stdout.write(base64.b64encode(buf.getvalue()).decode())\n"
)
PULLED = ("best", "results.json", "results.csv", "progress.json")


def pull(cluster: Cluster, spec: Experiment, to: Path, timeout: float = 180, require_model: bool = True,
         names: tuple = PULLED) -> list[str]:
    """Copy the best model, its hyperparameters and metrics, and the results (or just `names`) out
    of the volume through a short-lived pod (read-only mount) and the exec API (a tar stream)."""
    pod = helper_pod(spec, cluster.namespace)
    name = pod["metadata"]["name"]
    apply_objects(cluster, [pod])
    try:
        deadline = time.time() + timeout
        while True:
            current = cluster.core.read_namespaced_pod(name, cluster.namespace)
            problem = pod_problem(current)
            if problem:
                raise RunFailure(problem)
            if current.status.phase == "Running":
                break
            if time.time() > deadline:
                raise RunFailure(f"the helper pod {name} did not start within {timeout:.0f} s")
            _watch_once(cluster, "pods", selector(spec.name, "pull"), 5)
        encoded = exec_read(cluster, name, ["python", "-c", PULL_SCRIPT, *names], timeout=300)
    finally:
        try:
            cluster.core.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)
        except Exception:
            pass
    archive = tarfile.open(fileobj=io.BytesIO(base64.b64decode(encoded)), mode="r:gz")
    members = archive.getmembers()
    # metrics.json is the export's last file (after model.keras; a run_trial search has no model)
    if require_model and not any(m.name.startswith("best/metrics.json") for m in members):
        raise RunFailure(f"no exported best model or configuration on the volume of {spec.name!r} yet (the "
                         "search has not finished or no trial completed)")
    to.mkdir(parents=True, exist_ok=True)
    archive.extractall(to, filter="data")
    return sorted(m.name for m in members if m.isfile())
