"""A new user's path on a real cluster, end to end on the multi-node test bed (e2e/k8s):

1. a user project of two modules (a hypermodel file and a loader importing a sibling module) is
   built on the tunecluster image and pushed with `tunecluster build --push` to the bed's registry
   (TLS from the bed's CA, htpasswd login); a push without the login is one line and exit 1;
2. a Kubernetes user bound only to the Role of `tunecluster render --rbac` (a client certificate
   of the bed's CA, no other rights) uploads a 50 MB CSV onto the experiment's volume with
   `tunecluster upload`, then runs `up --workers 4`: the pods pull the pushed image by digest with
   the spec's `image_pull_secrets`, land on both nodes, and read the CSV from the volume;
3. `pull` brings the best model back; `attach` from a fresh folder shows the same results;
   `down` leaves nothing with the experiment's label;
4. a second experiment on the ReadWriteOnce class (local-path-provisioner): the claim is
   ReadWriteOnce and every pod of the experiment runs on one node.

Run as root with `python -m pytest -m e2e_kubernetes -s tests/e2e/test_kubernetes_journey.py`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from test_compose import base_image, docker_engine, image  # noqa: F401 - the tunecluster image (tests/e2e/test_compose.py)
from test_kubernetes_backend import registry_image  # noqa: F401 - the tunecluster image in the bed's registry
from tunecluster.tuning.examples import csv_path

pytestmark = [pytest.mark.e2e_kubernetes, pytest.mark.timeout(2400)]

NS = "tc-journey"
USER = "journey-user"
PULL_SECRET = "journey-registry"


@pytest.fixture(scope="module")
def bed(k8s_cluster):
    k8s_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    k8s_cluster.pull_secret(NS, name=PULL_SECRET)  # listed by the spec, not by the ServiceAccount
    return k8s_cluster


@pytest.fixture(scope="module")
def restricted_kubeconfig(bed, tmp_path_factory) -> Path:
    """A kubeconfig of a user with a client certificate of the bed's CA, bound only to the Role
    that `tunecluster render --rbac` prints (applied by the administrator)."""
    root = tmp_path_factory.mktemp("restricted-user")
    pki = Path(bed.pki)

    def ossl(*args):
        subprocess.run(["openssl", *map(str, args)], cwd=root, check=True, capture_output=True)

    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "user.key")
    ossl("req", "-new", "-key", "user.key", "-subj", f"/CN={USER}", "-out", "user.csr")
    (root / "user.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                                   "extendedKeyUsage=clientAuth\n")
    ossl("x509", "-req", "-in", "user.csr", "-CA", pki / "ca.crt", "-CAkey", pki / "ca.key", "-CAcreateserial",
         "-CAserial", root / "ca.srl", "-days", "2", "-extfile", "user.ext", "-out", "user.crt")
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "journey",
              "clusters": [{"name": "bed", "cluster": {"server": bed.api_url,
                                                       "certificate-authority": str(pki / "ca.crt")}}],
              "users": [{"name": USER, "user": {"client-certificate": str(root / "user.crt"),
                                                "client-key": str(root / "user.key")}}],
              "contexts": [{"name": "journey", "context": {"cluster": "bed", "user": USER, "namespace": NS}}]}
    path = root / "kubeconfig"
    path.write_text(json.dumps(config))
    rbac = run_cli("render", "--rbac", "-n", NS, "--user", USER, cwd=root)
    assert rbac.returncode == 0, rbac.stderr
    bed.kubectl("apply", "-f", "-", input=rbac.stdout)
    # what the user may not do (checked, not assumed): nothing outside the namespace, no Secrets listing
    for verb, resource, where in (("list", "secrets", ["-n", NS]), ("list", "pods", ["-n", "default"]),
                                  ("get", "nodes", []), ("list", "storageclasses", [])):
        can = bed.kubectl("auth", "can-i", verb, resource, *where, "--as", USER, check=False).stdout.strip()
        assert can == "no", (verb, resource, can)
    return path


def _project(root: Path, csv_in_pod: str) -> Path:
    """Two modules and a sibling package: the hypermodel imports `blocks`, the loader `pima_data`."""
    root.mkdir(parents=True)
    (root / "blocks.py").write_text(
        "import keras\n\n"
        "def dense_block(x, hp):\n"
        "    return keras.layers.Dense(hp.Int('units', 4, 16, step=4), activation='relu')(x)\n")
    (root / "model.py").write_text(
        "import keras\nfrom blocks import dense_block\n\n"
        "def build(hp):\n"
        "    inputs = keras.Input(shape=(8,))\n"
        "    outputs = keras.layers.Dense(1, activation='sigmoid')(dense_block(inputs, hp))\n"
        "    model = keras.Model(inputs, outputs)\n"
        "    model.compile('adam', 'binary_crossentropy', metrics=['accuracy'])\n"
        "    return model\n")
    (root / "pima_data.py").write_text(
        "import pandas as pd\n\n"
        "def load():\n"
        f"    frame = pd.read_csv({csv_in_pod!r})  # the 50 MB file on the shared volume\n"
        "    frame = frame.sample(n=3000, random_state=0)  # a tiny budget for the test\n"
        "    x, y = frame.drop(columns=['Outcome']).to_numpy('float32'), frame['Outcome'].to_numpy('float32')\n"
        "    return x[:2400], y[:2400], x[2400:], y[2400:]\n")
    (root / "requirements.txt").write_text("pyyaml\n")  # already in the image: nothing is downloaded
    (root / ".dockerignore").write_text("tunecluster-runs/\n*.csv\n")
    return root


def _spec(project: Path, name: str, workers: int, **kubernetes) -> Path:
    spec = {
        "name": name, "hypermodel": "model:build", "data": {"loader": "pima_data:load"},  # in the image
        "tuner": {"max_trials": 4, "seed": 5}, "fit": {"epochs": 1, "batch_size": 256, "tensorboard": False},
        "confirm": {"enabled": False},
        "cluster": {"workers": workers, "max_restarts": 2, "kubernetes": {
            "namespace": NS, "code": "image", "image_pull_secrets": [PULL_SECRET],
            "chief": {"cpu": "100m", "memory": "768Mi"}, "worker": {"cpu": "300m", "memory": "1536Mi"},
            **kubernetes}},
    }
    path = project / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _cli(kubeconfig: Path, *args, cwd: Path, timeout: float = 900, env: dict | None = None):
    result = run_cli(*args, cwd=cwd, timeout=timeout,
                     env={"KUBECONFIG": str(kubeconfig), "COLUMNS": "200", **(env or {})})
    print(f"[k8s journey] tunecluster {' '.join(map(str, args))} -> exit {result.returncode}", flush=True)
    return result


def _pods(bed, experiment: str) -> list[dict]:
    return bed.kubectl_json("get", "pods", "-n", NS, "-l", f"tunecluster.io/experiment={experiment}")["items"]


def _leftovers(bed, experiment: str) -> list[str]:
    out = bed.kubectl("get", "jobs,pods,services,configmaps,secrets,pvc,networkpolicies,deployments",
                      "-n", NS, "-l", f"tunecluster.io/experiment={experiment}", "-o", "name").stdout
    return [line for line in out.splitlines() if line.strip()]


def _big_csv(path: Path, megabytes: int = 50) -> Path:
    rows = csv_path().read_text().splitlines()
    header, body = rows[0], "\n".join(rows[1:]) + "\n"
    with path.open("w") as handle:
        handle.write(header + "\n")
        while handle.tell() < megabytes * 1_000_000:
            handle.write(body)
    return path


def test_own_project_pushed_uploaded_run_as_restricted_user_on_two_nodes(bed, registry_image, restricted_kubeconfig,  # noqa: F811
                                                                         image, tmp_path):  # noqa: F811
    registry = bed.registry
    project = _project(tmp_path / "my-project", "/shared/data/pima-50mb.csv")
    repository = f"{registry.host}/team/my-project"

    # 1. build --push: refused without the registry login (one line, exit 1), then pushed with it
    empty_docker = tmp_path / "no-login"
    empty_docker.mkdir()
    refused = _cli(restricted_kubeconfig, "build", str(project), "--from", image, "--push", f"{repository}:v1",
                   cwd=tmp_path, env={"DOCKER_CONFIG": str(empty_docker)}, timeout=1200)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 1 and len(errors) == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    print(f"[k8s journey] push without login: {errors[0]}", flush=True)
    assert not (project / ".tunecluster" / "image.json").exists()
    registry.docker_login()
    started = time.time()
    built = _cli(restricted_kubeconfig, "build", str(project), "--from", image, "--push", f"{repository}:v1",
                 cwd=tmp_path, env={"DOCKER_CONFIG": str(registry.docker_config)}, timeout=1200)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    record = json.loads((project / ".tunecluster" / "image.json").read_text())
    assert record["reference"] == f"{repository}@{record['digest']}"
    print(f"[k8s journey] build --push in {time.time() - started:.0f} s: {record['reference']}", flush=True)

    # 2. upload a 50 MB CSV onto the experiment's volume (the claim is made from the spec), as the user
    # the user cannot read StorageClasses (no --storage-reader): they say what their storage offers
    spec = _spec(project, "journey", workers=4, access_mode="ReadWriteMany")
    big = _big_csv(tmp_path / "pima-50mb.csv")
    started = time.time()
    uploaded = _cli(restricted_kubeconfig, "upload", str(big), "-f", str(spec), "--to", "data", cwd=project)
    assert uploaded.returncode == 0, uploaded.stdout[-3000:] + uploaded.stderr[-3000:]
    print(f"[k8s journey] upload of {big.stat().st_size / 1e6:.0f} MB in {time.time() - started:.0f} s", flush=True)
    claim = bed.kubectl_json("get", "pvc", "journey-shared", "-n", NS)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], claim["spec"]  # the bed's default class is RWX

    # up --workers 4 as the restricted user; the image is the one build --push recorded (by digest)
    started = time.time()
    up = _cli(restricted_kubeconfig, "up", "-f", str(spec), "--backend", "kubernetes", "--workers", "4",
              "--dir", "run", cwd=project, timeout=1500)
    print(up.stdout[-2500:], flush=True)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    print(f"[k8s journey] up --workers 4 in {time.time() - started:.0f} s", flush=True)
    pods = _pods(bed, "journey")
    placement = {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}
    print(f"[k8s journey] pods -> nodes: {placement}", flush=True)
    workers = [p for p in pods if p["metadata"]["labels"].get("tunecluster.io/role") == "worker"]
    assert len({p["spec"]["nodeName"] for p in workers}) >= 2, placement
    for pod in pods:  # the pushed image by digest, with the spec's pull secret
        assert pod["spec"]["imagePullSecrets"] == [{"name": PULL_SECRET}]
        assert pod["spec"]["containers"][0]["image"] == record["reference"]
    pulled = {s["imageID"] for p in pods for s in p["status"].get("containerStatuses") or [] if s.get("imageID")}
    print(f"[k8s journey] image IDs the kubelets report: {sorted(pulled)}", flush=True)
    assert pulled and all(record["digest"] in i for i in pulled), pulled
    results = json.loads((project / "run" / "results.json").read_text())
    done = [t for t in results["trials"] if t["status"] == "COMPLETED"]
    assert len(done) == 4, results["trials"]

    # 3. pull, attach from a fresh folder, down
    pulled_run = _cli(restricted_kubeconfig, "pull", "--dir", "run", "--to", "model", cwd=project)
    assert pulled_run.returncode == 0, pulled_run.stderr[-3000:]
    assert (project / "model" / "model.keras").stat().st_size > 1000
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    attached = _cli(restricted_kubeconfig, "attach", "journey", "-n", NS, "--dir", "copy", cwd=fresh)
    assert attached.returncode == 0, attached.stdout[-3000:] + attached.stderr[-3000:]
    copy = json.loads((fresh / "copy" / "results.json").read_text())
    assert [(t["trial_id"], t.get("score")) for t in copy["trials"]] == \
        [(t["trial_id"], t.get("score")) for t in results["trials"]]
    down = _cli(restricted_kubeconfig, "down", "--dir", "run", cwd=project)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    assert _leftovers(bed, "journey") == []


def test_read_write_once_claim_pins_every_pod_to_one_node(bed, registry_image, restricted_kubeconfig,  # noqa: F811
                                                         tmp_path):
    project = tmp_path / "pima"
    project.mkdir()
    shutil.copy(csv_path(), project / "diabetes.csv")
    spec = {
        "name": "journey-rwo", "hypermodel": "tunecluster.tuning.examples.pima:build_units",
        "data": {"csv": "diabetes.csv", "target": "Outcome"},
        "tuner": {"max_trials": 3, "seed": 3}, "fit": {"epochs": 1, "tensorboard": False},
        "confirm": {"enabled": False},
        "cluster": {"workers": 2, "kubernetes": {
            "namespace": NS, "image": registry_image, "image_pull_secrets": [PULL_SECRET],
            "storage_class": "tunecluster-rwo", "access_mode": "ReadWriteOnce",
            "chief": {"cpu": "100m", "memory": "768Mi"}, "worker": {"cpu": "300m", "memory": "1536Mi"}}},
    }
    (project / "spec.yaml").write_text(yaml.safe_dump(spec))
    up = _cli(restricted_kubeconfig, "up", "-f", "spec.yaml", "--backend", "kubernetes", "--dir", "run",
              cwd=project, timeout=1200)
    print(up.stdout[-2000:], flush=True)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    assert "runs on the node of the chief" in up.stdout + up.stderr  # up says why every pod is on one node
    claim = bed.kubectl_json("get", "pvc", "journey-rwo-shared", "-n", NS)
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and claim["spec"]["storageClassName"] == "tunecluster-rwo"
    volume = bed.kubectl_json("get", "pv", claim["spec"]["volumeName"])
    pinned = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
    nodes = {p["spec"]["nodeName"] for p in _pods(bed, "journey-rwo")}
    print(f"[k8s journey] ReadWriteOnce volume on {pinned}; the experiment's pods on {sorted(nodes)}", flush=True)
    assert len(nodes) == 1 and nodes == set(pinned)
    down = _cli(restricted_kubeconfig, "down", "--dir", "run", cwd=project)
    assert down.returncode == 0, down.stderr[-3000:]
    assert _leftovers(bed, "journey-rwo") == []
