"""tunecluster's Kubernetes backend end to end on the real multi-node test bed (e2e/k8s): the
project image pushed to the bed's registry and pulled by the nodes with an imagePullSecret, `tunecluster up --backend kubernetes --workers 2` on a tiny
Pima search (with `--tensorboard`), status/logs/results/pull, `tunecluster tensorboard`
port-forwarding to the TensorBoard pod (and `--deploy` on a kept volume), a deleted worker pod and a
deleted chief pod mid-search, `down` (and `--keep-volume`), an unmodified Keras Tuner script
(`up --script`), and the RBAC Role of `render --rbac` checked with `kubectl auth can-i`.
Run as root with `python -m pytest -m e2e_kubernetes -s` (see docs/testing.md, "Kubernetes test bed")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from test_compose import base_image, docker_engine, image  # noqa: F401 - the project image fixtures (tests/e2e/test_compose.py)
from tunecluster.backends.kubernetes import rbac
from tunecluster.tuning.examples import csv_path

pytestmark = [pytest.mark.e2e_kubernetes, pytest.mark.timeout(2400)]

NS = "tc-e2e"


@pytest.fixture(scope="module")
def bed(k8s_cluster, image):  # noqa: F811
    k8s_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    # The pods pull the project image from the bed's registry with this Secret, listed in the
    # namespace's default ServiceAccount (which Kubernetes adds to every pod of that account).
    k8s_cluster.pull_secret(NS, default_service_account=True)
    return k8s_cluster


@pytest.fixture(scope="module")
def registry_image(bed, image) -> str:  # noqa: F811
    """The project image in the bed's registry: the reference the experiment's pods pull."""
    started = time.time()
    ref = bed.push_docker_image(image, "tunecluster/project")
    print(f"\n[k8s e2e] pushed {image} to the bed's registry as {ref} in {time.time() - started:.0f} s", flush=True)
    return ref


def _placement(bed, experiment: str) -> dict[str, str]:
    """role-index -> node of every pod of an experiment (printed in the e2e log)."""
    pods = bed.kubectl_json("get", "pods", "-n", NS, "-l", f"tunecluster.io/experiment={experiment}")["items"]
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}


def _pulled(bed, experiment: str) -> set[str]:
    """The image IDs the kubelets report for an experiment's pods (registry@digest)."""
    pods = bed.kubectl_json("get", "pods", "-n", NS, "-l", f"tunecluster.io/experiment={experiment}")["items"]
    return {s.get("imageID", "") for p in pods for s in p["status"].get("containerStatuses") or [] if s.get("imageID")}


def _spec(tmp_path: Path, name: str, max_trials: int, epochs: int, image_name: str) -> Path:
    spec = {
        "name": name, "hypermodel": "tunecluster.tuning.examples.pima:build_units",
        "data": {"csv": str(csv_path()), "target": "Outcome"},
        "tuner": {"max_trials": max_trials, "seed": 3}, "fit": {"epochs": epochs},
        "cluster": {"workers": 2, "max_restarts": 3, "kubernetes": {
            "image": image_name, "image_pull_policy": "IfNotPresent",
            "chief": {"cpu": "200m", "memory": "512Mi"}, "worker": {"cpu": "700m", "memory": "1536Mi"}}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _cli(bed, *args, cwd, timeout=900):
    return run_cli(*args, cwd=cwd, timeout=timeout, env={"KUBECONFIG": str(bed.kubeconfig), "COLUMNS": "200"})


def _pods(bed, experiment: str, role: str) -> list[dict]:
    return bed.kubectl_json("get", "pods", "-n", NS, "-l",
                            f"tunecluster.io/experiment={experiment},tunecluster.io/role={role}")["items"]


def _index(pod: dict) -> str:
    return pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]


def _leftovers(bed, experiment: str) -> list[str]:
    out = bed.kubectl("get", "jobs,pods,services,configmaps,secrets,pvc,networkpolicies,deployments",
                      "-n", NS, "-l", f"tunecluster.io/experiment={experiment}", "-o", "name").stdout
    return [line for line in out.splitlines() if line.strip()]


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a shell's background job


def _tensorboard_forward(bed, tmp_path: Path, *args: str, hparams: bool = False) -> None:
    """`tunecluster tensorboard --dir run` in a subprocess started with SIGINT ignored: it prints a
    localhost URL that serves TensorBoard (through the port-forward), and SIGINT stops it (exit 0)."""
    started = time.time()
    env = {**os.environ, "KUBECONFIG": str(bed.kubeconfig), "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "tunecluster", "tensorboard", "--dir", "run", *args], cwd=tmp_path,
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_ignore_sigint)
    output = []
    try:
        for line in proc.stdout:  # "TensorBoard for <name>: http://localhost:<port>/ ..." once it answers
            output.append(line)
            if "http://localhost:" in line:
                break
        url = next((w for w in output[-1].split() if w.startswith("http://localhost:")), None) if output else None
        assert url, "".join(output) + (proc.stdout.read() if proc.poll() is not None else "")
        url = url.replace("localhost", "127.0.0.1")
        print(f"[k8s e2e] tensorboard {' '.join(args)}: {url} after {time.time() - started:.0f} s", flush=True)
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.status == 200 and b"<title>TensorBoard</title>" in answer.read()
        with urllib.request.urlopen(url + "data/environment", timeout=30) as answer:
            assert json.loads(answer.read())["data_location"] == "/shared/tensorboard"
        if hparams:  # the trials' HParams sessions on the volume, read by TensorBoard in the pod
            request = urllib.request.Request(url + "data/plugin/hparams/experiment", data=b'{"experimentName": ""}',
                                             headers={"content-type": "application/json"})
            deadline = time.time() + 60
            while True:
                experiment = json.loads(urllib.request.urlopen(request, timeout=30).read())
                if "units" in {h["name"] for h in experiment.get("hparamInfos", [])} or time.time() > deadline:
                    break
                time.sleep(2)
            assert "units" in {h["name"] for h in experiment["hparamInfos"]}, experiment
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(output) + proc.stdout.read()
    with pytest.raises(OSError):  # the relay went with it
        urllib.request.urlopen(url, timeout=5)


def test_up_status_logs_results_pull_and_down(bed, registry_image, tmp_path):
    version = json.loads(bed.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    print(f"[k8s e2e] API server {version}, nodes {bed.node_names}", flush=True)
    spec = _spec(tmp_path, "k8s-e2e", max_trials=4, epochs=1, image_name=registry_image)
    started = time.time()
    up = _cli(bed, "up", "-f", str(spec), "--backend", "kubernetes", "-n", NS, "--dir", "run", "--tensorboard",
              cwd=tmp_path)
    print(f"[k8s e2e] up took {time.time() - started:.0f} s", flush=True)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-3000:]
    workers = _pods(bed, "k8s-e2e", "worker")
    assert sorted({_index(p) for p in workers}) == ["0", "1"]
    placement, pulled = _placement(bed, "k8s-e2e"), _pulled(bed, "k8s-e2e")
    print(f"[k8s e2e] pods on nodes: {placement}; image pulled from the registry: {sorted(pulled)}", flush=True)
    assert len(set(placement.values())) >= 2, placement
    assert pulled and all(i.startswith(f"{bed.registry.host}/tunecluster/project@sha256:") for i in pulled), pulled
    assert all({"name": "registry-credentials"} in (p["spec"].get("imagePullSecrets") or []) for p in workers)
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [t["status"] for t in document["trials"]] == ["COMPLETED"] * 4
    assert {t["worker"] for t in document["trials"]} <= {"tuner0", "tuner1"}

    status = _cli(bed, "status", "--dir", "run", cwd=tmp_path, timeout=120)
    assert status.returncode == 0 and "worker-1" in status.stdout and "chief" in status.stdout, status.stdout + status.stderr
    chief_log = _cli(bed, "logs", "chief", "--dir", "run", "--tail", "0", cwd=tmp_path, timeout=120)
    assert chief_log.returncode == 0 and "search complete" in chief_log.stdout, chief_log.stdout[-2000:] + chief_log.stderr
    worker_log = _cli(bed, "logs", "worker-1", "--dir", "run", cwd=tmp_path, timeout=120)
    assert worker_log.returncode == 0 and "tuner1" in worker_log.stdout, worker_log.stderr
    results = _cli(bed, "results", "--dir", "run", "--format", "json", cwd=tmp_path, timeout=300)
    assert results.returncode == 0 and len(json.loads(results.stdout)["trials"]) == 4, results.stderr

    pulled = _cli(bed, "pull", "--dir", "run", "--to", "out", cwd=tmp_path, timeout=300)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    check = subprocess.run(
        [sys.executable, "-c", "import keras, numpy as np; m = keras.models.load_model('out/model.keras'); "
                               "print(m.predict(np.zeros((2, 8), 'float32'), verbose=0).shape)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert check.returncode == 0 and "(2, 1)" in check.stdout, check.stderr[-2000:]
    _tensorboard_forward(bed, tmp_path, hparams=True)

    kept = _cli(bed, "down", "--dir", "run", "--keep-volume", cwd=tmp_path, timeout=300)
    assert kept.returncode == 0, kept.stderr
    assert _leftovers(bed, "k8s-e2e") == ["persistentvolumeclaim/k8s-e2e-shared"]
    missing = _cli(bed, "tensorboard", "--dir", "run", cwd=tmp_path, timeout=120)
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert missing.returncode == 2 and len(lines) == 1 and "--deploy" in lines[0], missing.stderr
    _tensorboard_forward(bed, tmp_path, "--deploy")  # TensorBoard on the kept volume
    assert "deployment.apps/k8s-e2e-tensorboard" in _leftovers(bed, "k8s-e2e")
    gone = _cli(bed, "down", "--dir", "run", cwd=tmp_path, timeout=300)
    assert gone.returncode == 0 and _leftovers(bed, "k8s-e2e") == [], gone.stderr


def test_deleted_worker_and_chief_pods_come_back(bed, registry_image, tmp_path):
    name = "k8s-chaos"
    spec = _spec(tmp_path, name, max_trials=6, epochs=25, image_name=registry_image)
    env = {**os.environ, "KUBECONFIG": str(bed.kubeconfig), "TF_CPP_MIN_LOG_LEVEL": "2"}
    launcher = subprocess.Popen([sys.executable, "-m", "tunecluster", "up", "-f", str(spec), "--backend", "kubernetes",
                                 "-n", NS, "--dir", "run"], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    progress_path = tmp_path / "run" / "progress.json"

    def progress():
        try:
            return json.loads(progress_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    try:
        def mid_trial():
            worker = (progress().get("workers") or {}).get("tuner1") or {}
            return worker.get("state") == "running" and (worker.get("epoch") or 0) >= 2
        bed.wait_for("tuner1 mid-trial", mid_trial, timeout=600, interval=1)
        victim = next(p for p in _pods(bed, name, "worker") if _index(p) == "1" and p["status"]["phase"] == "Running")
        bed.kubectl("delete", "pod", "-n", NS, victim["metadata"]["name"], "--wait=false")
        bed.wait_for("a new pod with index 1", lambda: any(
            _index(p) == "1" and p["metadata"]["name"] != victim["metadata"]["name"]
            for p in _pods(bed, name, "worker")), timeout=120, interval=1)

        bed.wait_for("two completed trials", lambda: (progress().get("counts") or {}).get("completed", 0) >= 2,
                     timeout=600, interval=1)
        chief = next(p for p in _pods(bed, name, "chief") if p["status"]["phase"] == "Running")
        bed.kubectl("delete", "pod", "-n", NS, chief["metadata"]["name"], "--wait=false")
        bed.wait_for("a new chief pod", lambda: any(
            p["metadata"]["name"] != chief["metadata"]["name"] and p["status"]["phase"] == "Running"
            for p in _pods(bed, name, "chief")), timeout=180, interval=1)
        output, _ = launcher.communicate(timeout=1200)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, output[-5000:]
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    ids = [t["trial_id"] for t in document["trials"]]
    assert len(ids) == len(set(ids)) == 6
    assert [t["status"] for t in document["trials"]] == ["COMPLETED"] * 6
    chief_log = _cli(bed, "logs", "chief", "--dir", "run", "--tail", "0", cwd=tmp_path, timeout=120).stdout
    assert "resumed the search" in chief_log
    assert _cli(bed, "down", "--dir", "run", cwd=tmp_path, timeout=300).returncode == 0
    assert _leftovers(bed, name) == []


def _prepull(bed, ref: str) -> None:
    """Pull the image on every node before a search (a node brought back by start_node() is empty),
    so that no worker starts half a minute after the others."""
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"prepull-{n}"}, "spec": {
        "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": n},
        "containers": [{"name": "pull", "image": ref, "command": ["true"]}]}} for n in bed.node_names]
    bed.apply(pods, namespace=NS)
    bed.wait_for("the image on every node", lambda: all(bed.kubectl_json("get", "pod", p["metadata"]["name"], "-n", NS)[
        "status"].get("phase") == "Succeeded" for p in pods), 300, interval=1)
    bed.kubectl("delete", "pods", "-n", NS, *[p["metadata"]["name"] for p in pods], "--wait=false")


def _lose_a_worker_mid_trial(bed, image_name: str, tmp_path: Path, name: str, how: str) -> None:
    """Run a 6-trial search and lose a worker mid-trial. `how`: "node": stop_node() the node of a
    worker on a node without the chief (as a spot instance goes: kubelet, containerd and the pod's
    processes killed), and bring the node back once the control plane has evicted the pod;
    "preempt": delete a worker's pod. Then: the launcher succeeds, every trial completes exactly
    once (6 distinct ids), and the lost trial was taken back (requeued by the chief, or resumed by the
    lost worker's replacement pod) and finished by another pod than the lost one."""
    _prepull(bed, image_name)
    spec = _spec(tmp_path, name, max_trials=6, epochs=30, image_name=image_name)
    env = {**os.environ, "KUBECONFIG": str(bed.kubeconfig), "TF_CPP_MIN_LOG_LEVEL": "2"}
    launcher = subprocess.Popen([sys.executable, "-m", "tunecluster", "up", "-f", str(spec), "--backend", "kubernetes",
                                 "-n", NS, "--dir", "run"], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run = tmp_path / "run"

    def read(file: str) -> dict:
        try:
            return json.loads((run / file).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    lost_node = None
    try:
        def victim():
            chief = [p for p in _pods(bed, name, "chief") if p["status"].get("phase") == "Running"]
            if not chief:
                return None
            for pod in _pods(bed, name, "worker"):
                tuner = f"tuner{_index(pod)}"
                state = (read("progress.json").get("workers") or {}).get(tuner) or {}
                if (pod["status"].get("phase") == "Running" and state.get("state") == "running" and state.get("trial")
                        and (state.get("epoch") or 0) >= 2
                        and (how != "node" or pod["spec"]["nodeName"] != chief[0]["spec"]["nodeName"])):
                    return pod, tuner, state["trial"]
            return None
        pod, tuner, trial = bed.wait_for("a worker mid-trial" + (" on a node without the chief" if how == "node" else ""),
                                         victim, 600, interval=0.5)
        print(f"\n[k8s e2e] {name}: pods on nodes {_placement(bed, name)}", flush=True)
        lost_at = time.time()
        if how == "node":
            lost_node = pod["spec"]["nodeName"]
            bed.stop_node(lost_node)
            print(f"[k8s e2e] {name}: stopped node {lost_node} with {pod['metadata']['name']} ({tuner}, trial {trial})",
                  flush=True)

            def evicted():
                got = bed.kubectl_json("get", "pod", pod["metadata"]["name"], "-n", NS)
                return got["metadata"].get("deletionTimestamp")
            bed.wait_for(f"{pod['metadata']['name']} evicted from the lost node", evicted, 180, interval=1)
            print(f"[k8s e2e] {name}: {pod['metadata']['name']} evicted {time.time() - lost_at:.0f} s after the loss",
                  flush=True)
            bed.start_node(lost_node)
            print(f"[k8s e2e] {name}: node {lost_node} back {time.time() - lost_at:.0f} s after the loss", flush=True)
            lost_node = None
        else:
            bed.kubectl("delete", "pod", "-n", NS, pod["metadata"]["name"], "--wait=false")
            print(f"[k8s e2e] {name}: deleted {pod['metadata']['name']} ({tuner}, trial {trial}) on "
                  f"{pod['spec']['nodeName']}", flush=True)
        output, _ = launcher.communicate(timeout=1200)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        if lost_node:
            bed.start_node(lost_node)
    assert launcher.returncode == 0, output[-5000:]
    print(f"[k8s e2e] {name}: pods on nodes at the end {_placement(bed, name)}", flush=True)
    trials = read("results.json")["trials"]
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == len(set(ids)) == 6  # every trial once, the expected count
    assert [t["status"] for t in trials] == ["COMPLETED"] * 6
    row = next(t for t in trials if t["trial_id"] == trial)
    finisher = row["worker"]
    # Taken back either by the chief (its lease expired: requeued, then run by whichever worker asked)
    # or by the lost worker's replacement pod, which comes back with the same tuner id and resumes it.
    assert row["status"] == "COMPLETED" and (row["requeues"] >= 1 or finisher == tuner), row
    finishing_pods = [p for p in _pods(bed, name, "worker") if f"tuner{_index(p)}" == finisher]
    assert finishing_pods and all(p["metadata"]["uid"] != pod["metadata"]["uid"] for p in finishing_pods), (
        finisher, [p["metadata"]["name"] for p in finishing_pods])  # finished by another pod than the lost one
    print(f"[k8s e2e] {name}: trial {trial} taken back ({row['requeues']} requeue(s)) and finished by {finisher} in "
          f"{[p['metadata']['name'] for p in finishing_pods]} on {sorted({p['spec']['nodeName'] for p in finishing_pods})};"
          f" {len(ids)} trials, each once", flush=True)
    assert _cli(bed, "down", "--dir", "run", cwd=tmp_path, timeout=300).returncode == 0
    assert _leftovers(bed, name) == []


def test_node_lost_mid_search(bed, registry_image, tmp_path):
    _lose_a_worker_mid_trial(bed, registry_image, tmp_path, "k8s-node-loss", "node")


def test_worker_pod_preempted_mid_search(bed, registry_image, tmp_path):
    _lose_a_worker_mid_trial(bed, registry_image, tmp_path, "k8s-preempt", "preempt")


def test_an_unmodified_script_runs_on_kubernetes(bed, registry_image, tmp_path):
    """`up --script` on the bed: the script's folder (the tutorial's units phase, a sibling CSV
    passed as an absolute path) travels in the project ConfigMaps, every pod runs the script from
    /code with the CSV's path rewritten; `-f` gives only the cluster settings. The search completes,
    `get_best_*` after `search()` answers in every pod, and `pull` brings the model back."""
    from keras_tuner_scripts import TUTORIAL

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pima_units.py").write_text(TUTORIAL["pima_units.py"])
    (folder / "diabetes.csv").write_text(csv_path().read_text())
    settings = tmp_path / "cluster.yaml"
    settings.write_text(yaml.safe_dump({"name": "k8s-script", "cluster": {"workers": 2, "kubernetes": {
        "image_pull_policy": "IfNotPresent", "chief": {"cpu": "200m", "memory": "1Gi"},
        "worker": {"cpu": "700m", "memory": "1536Mi"}}}}))
    started = time.time()
    up = _cli(bed, "up", "--script", str(folder / "pima_units.py"), "-f", str(settings), "--backend", "kubernetes",
              "--image", registry_image, "-n", NS, "--dir", "run", "--", str(folder / "diabetes.csv"), "3", "1",
              cwd=tmp_path)
    print(f"[k8s e2e] up --script took {time.time() - started:.0f} s", flush=True)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-3000:]
    jobs = bed.kubectl_json("get", "jobs", "-n", NS, "-l", "tunecluster.io/experiment=k8s-script")["items"]
    commands = [j["spec"]["template"]["spec"]["containers"][0]["command"] for j in jobs]
    assert len(commands) == 2 and all(c == ["tunecluster", "script", "/code/pima_units.py", "diabetes.csv", "3", "1"]
                                      for c in commands), commands
    trials = json.loads((tmp_path / "run" / "results.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["COMPLETED"] * 3, trials
    best = {}
    for role in ("chief", "worker-0", "worker-1"):
        log = _cli(bed, "logs", role, "--dir", "run", "--tail", "0", cwd=tmp_path, timeout=120)
        found = [line for line in log.stdout.splitlines() if line.startswith("BEST ")]
        assert log.returncode == 0 and found, f"{role}: " + log.stdout[-2000:] + log.stderr
        best[role] = json.loads(found[-1][5:])["values"]
    assert best["chief"] == best["worker-0"] == best["worker-1"], best
    pulled = _cli(bed, "pull", "--dir", "run", "--to", "out", cwd=tmp_path, timeout=300)
    assert pulled.returncode == 0 and (tmp_path / "out" / "model.keras").is_file(), pulled.stdout + pulled.stderr
    assert json.loads((tmp_path / "out" / "hyperparameters.json").read_text()) == best["chief"]
    gone = _cli(bed, "down", "--dir", "run", cwd=tmp_path, timeout=300)
    assert gone.returncode == 0 and _leftovers(bed, "k8s-script") == [], gone.stderr


def test_an_image_not_in_the_registry_fails_in_one_line(bed, tmp_path):
    """`up` with an image the registry does not have: the kubelets get ErrImagePull/ImagePullBackOff
    (the registry answers "not found"), and the launcher stops with one line that says so (exit 1)."""
    missing = bed.registry.ref("tunecluster/never-pushed", "1")
    spec = _spec(tmp_path, "k8s-no-image", max_trials=2, epochs=1, image_name=missing)
    up = _cli(bed, "up", "-f", str(spec), "--backend", "kubernetes", "-n", NS, "--dir", "run", cwd=tmp_path,
              timeout=600)
    lines = [line for line in up.stderr.splitlines() if line.strip()]
    print(f"[k8s e2e] up with {missing}: exit {up.returncode}: {lines[-1] if lines else ''}", flush=True)
    assert up.returncode == 1, up.stdout[-2000:] + up.stderr[-2000:]
    assert len(lines) == 1 and "cannot be pulled" in lines[0] and missing in lines[0], up.stderr
    assert "ErrImagePull" in lines[0] or "ImagePullBackOff" in lines[0], lines[0]
    assert _cli(bed, "down", "--dir", "run", cwd=tmp_path, timeout=300).returncode == 0
    assert _leftovers(bed, "k8s-no-image") == []


def test_the_rendered_role_grants_every_verb_the_launcher_uses(bed):
    bed.apply([rbac.role(NS), rbac.role_binding(NS, "alice")], namespace=NS)
    needed = [("create", "configmaps"), ("patch", "secrets"), ("get", "secrets"), ("patch", "persistentvolumeclaims"),
              ("create", "jobs.batch"), ("patch", "jobs.batch"), ("watch", "jobs.batch"), ("delete", "jobs.batch"),
              ("create", "services"), ("patch", "networkpolicies.networking.k8s.io"),
              ("patch", "deployments.apps"), ("watch", "pods"), ("list", "pods"), ("create", "pods"),
              ("delete", "pods"), ("get", "pods/log"), ("create", "pods/exec"), ("delete", "persistentvolumeclaims"),
              ("list", "networkpolicies.networking.k8s.io"), ("delete", "secrets")]
    for verb, resource in needed:
        answer = bed.kubectl("auth", "can-i", verb, resource, "-n", NS, "--as", "alice", check=False)
        assert answer.stdout.strip() == "yes", (verb, resource, answer.stdout, answer.stderr)
    for verb, resource in (("create", "clusterroles.rbac.authorization.k8s.io"), ("delete", "nodes"),
                           ("create", "pods")):
        namespace = ["-n", "kube-system"] if resource == "pods" else []
        answer = bed.kubectl("auth", "can-i", verb, resource, *namespace, "--as", "alice", check=False)
        assert answer.stdout.strip() == "no", (verb, resource)
