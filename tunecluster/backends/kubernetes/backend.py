"""The Kubernetes backend: apply an experiment's objects (server-side apply, field manager
`tunecluster`), wait for the chief with a watch, follow the search from the chief's state on the
volume, and status, logs, results, pull, TensorBoard and down through the API.

The local run folder (`--dir`) holds the spec, `cluster.json` (backend, namespace, context) and
copies of the chief's progress.json / results.json, read through the exec API, so the live view
and `tunecluster results` work as for the local backend.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Optional, TextIO

from tunecluster.backends.base import Backend, ClusterAccess, DownOptions, RenderOptions, Say, Session, UpOptions
from tunecluster.backends.image_record import kubernetes_image
from tunecluster.backends.kubernetes import forward as fwd
from tunecluster.backends.kubernetes import rbac
from tunecluster.backends.kubernetes.apply import (
    apply_objects,
    delete_experiment,
    experiment_objects,
)
from tunecluster.backends.kubernetes.client import Cluster, connect
from tunecluster.backends.kubernetes.follow import FINAL_FILES, KubernetesSession, ProgressMirror
from tunecluster.backends.kubernetes.job_progress import JobProgress
from tunecluster.backends.kubernetes.lifecycle import (Presence, cluster_config, localize, mark_kept, presence, resume_note,
                                                       save_pod_logs, start_refusal, when)
from tunecluster.backends.kubernetes.pod_problems import pod_problem
from tunecluster.backends.kubernetes.pods import job_state, logs, pod_role_name, role_pods, wait_for_chief
from tunecluster.backends.kubernetes.render import (Names, check_carried, chief_dns_names, kubectl_apply_hint, render,
                                                    tensorboard_objects, to_yaml)
from tunecluster.backends.kubernetes.storage import decide_storage
from tunecluster.backends.kubernetes.data_check import check_pod_data
from tunecluster.backends.kubernetes.transfer import pull
from tunecluster.backends.status import ClusterStatus, RoleStatus
from tunecluster.cluster.plan import DEFAULT_PORT
from tunecluster.cluster.run_secrets import make_certificate, new_token
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, read_json, write_atomic, write_json
from tunecluster.tuning.overrides import Overrides
from tunecluster.tuning.spec import Experiment, dump_spec, load_spec, validate_spec


_STATES = {"Running": "running", "Pending": "pending", "Succeeded": "exited", "Failed": "failed"}


class KubernetesBackend(Backend):
    name = "kubernetes"
    runs_scripts = True  # the script's folder travels in the project ConfigMaps (render.carry_files)

    def __init__(self):
        self._cluster: Optional[Cluster] = None
        self._access = ClusterAccess()  # --context/--namespace/--kubeconfig of a command after `up`
        self._found: Optional[Presence] = None  # what `check` found of an earlier experiment

    # --- connecting ---------------------------------------------------------------------------
    def connect(self, run: Optional[RunDir] = None, context: Optional[str] = None,
                namespace: Optional[str] = None, kubeconfig: Optional[str] = None,
                spec: Optional[Experiment] = None) -> Cluster:
        """The API server of a run (the command's --context/--namespace/--kubeconfig, else what the
        run recorded) or of a spec."""
        recorded = (read_json(run.cluster) or {}) if run is not None else {}
        access = self._access
        ns = (namespace or access.namespace or recorded.get("namespace")
              or (spec.cluster.kubernetes.namespace if spec else None))
        return connect(context or access.context or recorded.get("context"), ns,
                       kubeconfig or access.kubeconfig or recorded.get("kubeconfig"))

    def use_cluster(self, access: ClusterAccess) -> None:
        self._access = access

    # --- before a run -------------------------------------------------------------------------
    def apply_options(self, spec: Experiment, options: UpOptions) -> tuple[Experiment, UpOptions]:
        """--image: every pod's image; without it, a spec that names no image runs the one
        `tunecluster build --push` recorded for the project (by digest). --gpus N: nvidia.com/gpu
        per worker pod. --build is refused (`tunecluster build --push` makes a pushed image)."""
        if options.build:
            raise UsageError("--build is for compose; for Kubernetes build and push the project image with "
                             "`tunecluster build --push REGISTRY/NAME` (up then runs it by digest)")
        image = kubernetes_image(spec, options.project, options.image)
        overrides = Overrides(kubernetes_image=image, worker_gpus=_worker_gpus(options.gpus))
        return overrides.apply(spec), options

    def check(self, spec: Experiment, options: UpOptions) -> None:
        # fail on a bad kubeconfig, over an earlier experiment of the same name, or on code, data
        # or storage the pods cannot use, before the run folder is written
        self._cluster = cluster = self.connect(None, options.context, options.namespace, options.kubeconfig, spec)
        self._found = presence(cluster, spec.name)
        refusal = start_refusal(self._found, resume=options.resume,
                                existing_claim=bool(spec.cluster.kubernetes.existing_claim))
        if refusal:
            raise UsageError(refusal)
        self._check_pod_inputs(spec, options.script)
        check_pod_data(cluster, spec)

    def _check_pod_inputs(self, spec: Experiment, script: tuple[str, ...] = ()) -> None:
        """What the pods get, checked before the run folder is written: the carried project and
        data (sizes) and the shared volume's access mode (StorageClass or claim)."""
        self._notes = check_carried(spec, script)
        self._storage = decide_storage(self._cluster, spec)

    def render(self, spec: Experiment, options: RenderOptions) -> str:
        spec = Overrides(kubernetes_image=options.image, worker_gpus=_worker_gpus(options.gpus)).apply(spec)
        ns = options.namespace or spec.cluster.kubernetes.namespace or "default"
        token = new_token() if options.include_secret else None
        tls = None
        if spec.cluster.tls and options.include_secret:
            tls = make_certificate(chief_dns_names(Names(spec.name), ns))
        objects = render(spec, namespace=ns, token=token, tls=tls, tensorboard=options.tensorboard or None)
        notes = "".join(f"# {note}\n" for note in check_carried(spec))
        text = notes + (kubectl_apply_hint(objects) or "") + to_yaml(objects)
        if not options.include_secret:
            secret = Names(spec.name).secret
            text = (f"# The Secret {secret} (the oracle token) is not printed; create it with\n"
                    f"#   kubectl -n {ns} create secret generic {secret} --from-literal=token=$(openssl rand -hex 32)\n"
                    "# or pass --include-secret. `tunecluster up --backend kubernetes` creates it for you.\n" + text)
        return text

    def render_rbac(self, namespace: str, user: Optional[str], experiments: tuple[str, ...] = (),
                    storage_reader: bool = False) -> str:
        """The Role (Secrets limited to `experiments`' own when given) and the RoleBinding for `user`;
        with `storage_reader`, the ClusterRole to read StorageClasses (and its binding for `user`)."""
        objects = [rbac.role(namespace, experiments=experiments)] + ([rbac.role_binding(namespace, user)] if user else [])
        if storage_reader:
            objects += [rbac.storage_cluster_role()] + ([rbac.storage_cluster_role_binding(user)] if user else [])
        return to_yaml(objects)

    # --- a run --------------------------------------------------------------------------------
    def up(self, spec: Experiment, run: RunDir, options: UpOptions, say: Say) -> Optional[Session]:
        cluster = self._cluster or self.connect(None, options.context, options.namespace, options.kubeconfig, spec)
        storage = getattr(self, "_storage", None)
        objects = experiment_objects(cluster, spec, options.tensorboard, storage=storage, script=options.script)
        for note in getattr(self, "_notes", []) + ([storage.message] if storage and storage.message else []):
            say(note)
        write_json(run.cluster, {"backend": self.name, "experiment": spec.name, "namespace": cluster.namespace,
                                 "context": cluster.context, "server": cluster.server,
                                 "kubeconfig": options.kubeconfig, "image": spec.cluster.kubernetes.image,
                                 "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in objects]})
        say(f"tunecluster: {spec.name} ({spec.tuner.kind}, {spec.tuner.max_trials} trials, "
            f"{spec.cluster.workers} workers) in namespace {cluster.namespace} on {cluster.server}, "
            f"image {spec.cluster.kubernetes.image}")
        note = resume_note(self._found) if self._found is not None and options.resume else None
        if note:
            say(note)
        if options.resume and self._found is not None and self._found.claim_kept:
            mark_kept(cluster, spec.name, False)
        apply_objects(cluster, objects)
        say("applied: " + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects))
        say(f"chief ready ({wait_for_chief(cluster, spec, say=say)})")
        if options.detach:
            say(f"detached; follow with `tunecluster status --dir {run.root}`")
            return None
        return KubernetesSession(cluster, spec, run, say)

    def best_hint(self, run: RunDir, spec: Experiment) -> str:
        what = "best configuration" if spec.run_trial else "best model"
        return f"{what} on the volume; copy it with `tunecluster pull --dir {run.root} --to DIR`"

    def attach(self, name: str, run: RunDir, access: ClusterAccess, say: Say, *, follow: bool) -> Optional[Session]:
        """The run folder of experiment `name` from the cluster: its spec (the ConfigMap's), where
        it runs (cluster.json), the progress and results (through the chief, else the volume)."""
        import yaml

        self._access = access
        cluster = self.connect(None)
        text, files = cluster_config(cluster, name)
        spec = validate_spec(yaml.safe_load(text), f"the spec in ConfigMap {Names(name).config}")
        if run.exists() and load_spec(run.spec).name != name:
            raise UsageError(f"--dir {run.root} holds the run of experiment {load_spec(run.spec).name!r}, not "
                             f"{name!r}; pass another --dir")
        if run.root.exists() and any(run.root.iterdir()) and not run.exists():
            raise UsageError(f"--dir {run.root} exists and is not a tunecluster run; choose an empty or new folder")
        found = presence(cluster, name)
        carried = run.root / "carried"  # the ConfigMap's files: `up --resume` carries them again
        carried.mkdir(parents=True, exist_ok=True)
        for key, content in files.items():
            (carried / key).write_bytes(content)
        if not run.exists():  # (a folder `up` made keeps the spec it was started with)
            write_atomic(run.spec, dump_spec(localize(spec, carried)))
        recorded = read_json(run.cluster) or {}
        write_json(run.cluster, {**recorded, "backend": self.name, "experiment": name,
                                 "namespace": cluster.namespace, "context": cluster.context,
                                 "server": cluster.server, "kubeconfig": access.kubeconfig,
                                 "image": spec.cluster.kubernetes.image,
                                 "started": found.started.isoformat() if found.started else None,
                                 "attached_at": time.time()})
        mirror = ProgressMirror(cluster, spec, run)
        if not mirror.refresh() and (found.claim or spec.cluster.kubernetes.existing_claim):
            mirror.from_volume()  # the chief has ended: its final files from the volume
        if found.chief_job:
            JobProgress(cluster, Names(name).chief).publish(read_json(run.progress))
        state = ("running" if found.live else f"chief Job {found.job_state}" if found.chief_job
                 else "no Jobs left")
        say(f"attached to {name} in namespace {cluster.namespace} on {cluster.server} ({state}, started "
            f"{when(found.started)}); run folder {run.root}")
        if follow and found.live:
            return KubernetesSession(cluster, spec, run, say)
        return None

    # --- after a run --------------------------------------------------------------------------
    def status(self, run: RunDir) -> ClusterStatus:
        spec = load_spec(run.spec)
        cluster = self.connect(run)
        pods = role_pods(cluster, spec.name)
        if ProgressMirror(cluster, spec, run).refresh():
            JobProgress(cluster, Names(spec.name).chief).publish(read_json(run.progress))
        newest: dict[str, object] = {}
        older: dict[str, int] = {}
        for pod in pods:  # oldest first: a Job's replacement pods come later
            name = pod_role_name(pod)
            if name in newest:
                older[name] = older.get(name, 0) + 1
            newest[name] = pod
        roles = []
        for name, pod in newest.items():
            statuses = pod.status.container_statuses or []
            terminated = next((s.state.terminated for s in statuses if s.state and s.state.terminated), None)
            roles.append(RoleStatus(
                name, "chief" if name == "chief" else name.replace("worker-", "tuner"),
                _STATES.get(pod.status.phase, (pod.status.phase or "unknown").lower()),
                exit_code=terminated.exit_code if terminated else None,
                restarts=sum(s.restart_count for s in statuses) + older.get(name, 0),
                host=pod.spec.node_name, instance=pod.metadata.name, problem=pod_problem(pod)))
        names = Names(spec.name)
        recorded = read_json(run.cluster) or {}
        return ClusterStatus.of(run, self.name, roles, experiment=spec.name,
                                chief_address=f"{names.chief}.{cluster.namespace}.svc:{spec.cluster.port or DEFAULT_PORT}",
                                where={"namespace": cluster.namespace, "context": recorded.get("context"),
                                       "chief_job": job_state(cluster, names.chief),
                                       "workers_job": job_state(cluster, names.workers)})

    def refresh(self, run: RunDir) -> None:
        """The latest results through the chief, else from the volume through a helper pod."""
        import tempfile

        spec = load_spec(run.spec)
        cluster = self.connect(run)
        if ProgressMirror(cluster, spec, run).refresh():
            return
        with tempfile.TemporaryDirectory() as scratch:
            pull(cluster, spec, Path(scratch), require_model=False)
            for name in FINAL_FILES:
                if (Path(scratch) / name).is_file():
                    shutil.copy2(Path(scratch) / name, run.root / name)

    def logs(self, run: RunDir, role: str, *, tail: int, follow: bool, out: TextIO) -> None:
        saved = ((read_json(run.cluster) or {}).get("saved_logs") or {}).get(role)
        try:
            logs(self.connect(run), load_spec(run.spec).name, role, tail=tail or None, follow=follow, out=out)
        except UsageError:
            if not saved or not (run.logs / saved[-1]).is_file():  # `down` saved the pod's log
                raise
            lines = (run.logs / saved[-1]).read_text(errors="replace").splitlines()
            out.write("\n".join(lines[-tail:] if tail else lines) + "\n")

    def pull(self, run: RunDir, scratch: Path, progress=None) -> RunDir:
        pull(self.connect(run), load_spec(run.spec), scratch, progress=progress)
        return RunDir(scratch)

    def down(self, run: RunDir, options: DownOptions) -> str:
        if options.volumes:
            raise UsageError("--volumes is for compose runs; on Kubernetes `down` deletes the volume claim "
                             "unless --keep-volume")
        cluster = self.connect(run)
        name = load_spec(run.spec).name
        saved = save_pod_logs(cluster, name, run.logs)  # before anything is deleted
        if saved:
            recorded = read_json(run.cluster) or {}
            logs = recorded.get("saved_logs") or {}
            for role, files in saved.items():
                logs[role] = [f for f in logs.get(role, []) if f not in files] + files
            write_json(run.cluster, {**recorded, "saved_logs": logs})
        deleted = delete_experiment(cluster, name, keep_volume=options.keep_volume)
        if options.keep_volume and presence(cluster, name).claim:
            mark_kept(cluster, name, True)  # a later `up` of the name then asks for --resume
        count = sum(len(files) for files in saved.values())
        kept = f"; logs of {count} pods saved in {run.logs}" if count else ""
        return (f"deleted: {', '.join(deleted)}" if deleted else "nothing was left") + kept

    def tensorboard(self, run: RunDir, *, host: str, port: Optional[int], deploy: bool, say: Say) -> int:
        """Forward 127.0.0.1:<free port> to the run's TensorBoard pod until Ctrl-C/SIGTERM."""
        spec = load_spec(run.spec)
        cluster = self.connect(run)
        names = Names(spec.name)
        if not fwd.deployment_exists(cluster, names.tensorboard):
            claim = spec.cluster.kubernetes.existing_claim or names.claim
            if not fwd.claim_exists(cluster, claim):
                raise UsageError(f"the run {spec.name!r} has no TensorBoard in namespace {cluster.namespace} and its "
                                 f"volume claim {claim} is gone (`down` deleted it), so there are no logs to show; "
                                 "start a new run with `up --backend kubernetes --tensorboard`")
            if not deploy:
                raise UsageError(f"the run {spec.name!r} has no TensorBoard in namespace {cluster.namespace} (no "
                                 f"Deployment {names.tensorboard}: it was started without `up --tensorboard` or "
                                 f"cluster.kubernetes.tensorboard); add it with `tunecluster tensorboard --dir "
                                 f"{run.root} --deploy`")
            apply_objects(cluster, tensorboard_objects(spec, cluster.namespace))
            say(f"applied: Deployment/{names.tensorboard}, Service/{names.tensorboard} (`tunecluster down` removes them)")
        forward = fwd.TensorBoardForward(cluster, spec.name)
        relay = fwd.Relay(forward.connect, host=host, port=port or 0).start()
        try:
            say(f"waiting for the TensorBoard pod of {spec.name} ...")
            fwd.wait_until_serving(relay, forward)
            shown = "localhost" if host in ("127.0.0.1", "localhost") else host
            url = f"http://{shown}:{relay.port}/"
            say(f"TensorBoard for {spec.name}: {url} (forwarded to pod {forward.ready_pod() or '?'} in "
                f"namespace {cluster.namespace}; HParams tab: {url}#hparams); Ctrl-C to stop")
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            relay.close()
        return 0


def _worker_gpus(value: Optional[str]) -> Optional[int]:
    """`--gpus N` on Kubernetes: nvidia.com/gpu per worker pod ("all" has no meaning there)."""
    if value in (None, ""):
        return None
    if value.isdigit() and int(value) <= 16:
        return int(value)
    raise UsageError(f"--gpus {value!r}: on Kubernetes give the number of GPUs each worker pod asks for "
                     "(0-16; nvidia.com/gpu); 'all' has no meaning on a cluster")
