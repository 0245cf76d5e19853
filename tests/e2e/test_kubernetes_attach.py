"""Re-attach and lifecycle on the Kubernetes test bed (marker `e2e_kubernetes`; fixtures from
tests/e2e/test_kubernetes_backend.py): `up --detach`, a second `up` of the same name refused with
one line, `attach --follow` from a fresh folder follows it to the end with the same results, the
chief Job shows trials done/total (`kubectl get jobs -L`), `-n/--namespace` on the other commands,
`down` from the attached folder saves every pod's log first and leaves nothing with the label, and
`down --keep-volume` then `up` is refused instead of resuming the kept search silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_compose import base_image, docker_engine, image  # noqa: F401 - the project image fixtures
from test_kubernetes_backend import NS, _cli, _leftovers, _spec, bed, registry_image  # noqa: F401 - the bed fixtures

pytestmark = [pytest.mark.e2e_kubernetes, pytest.mark.timeout(2400)]


def test_attach_from_a_fresh_folder_follows_to_the_same_results_and_down_saves_the_logs(bed, registry_image, tmp_path):  # noqa: F811
    spec = _spec(tmp_path, "k8s-attach", max_trials=3, epochs=1, image_name=registry_image)
    up = _cli(bed, "up", "-f", str(spec), "--backend", "kubernetes", "-n", NS, "--dir", "first", "--detach",
              "--no-confirm", cwd=tmp_path)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    again = _cli(bed, "up", "-f", str(spec), "--backend", "kubernetes", "-n", NS, "--dir", "second",
                 cwd=tmp_path, timeout=120)
    assert again.returncode == 2, again.stdout + again.stderr
    assert f"experiment k8s-attach is running in namespace {NS} (started" in again.stderr
    assert not (tmp_path / "second").exists()  # refused before the run folder was written

    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    attached = _cli(bed, "attach", "k8s-attach", "-n", NS, "--follow", cwd=fresh)
    assert attached.returncode == 0, attached.stdout[-3000:] + attached.stderr[-3000:]
    assert f"attached to k8s-attach in namespace {NS}" in attached.stdout
    run = fresh / "tunecluster-runs" / "k8s-attach"
    recorded = json.loads((run / "cluster.json").read_text())
    assert recorded["backend"] == "kubernetes" and recorded["namespace"] == NS
    trials = json.loads((run / "results.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["COMPLETED"] * 3
    jobs = bed.kubectl("get", "jobs", "-n", NS, "-l", "tunecluster.io/experiment=k8s-attach,tunecluster.io/role=chief",
                       "-L", "tunecluster.io/trials-done", "-L", "tunecluster.io/trials-total").stdout
    assert jobs.splitlines()[1].split()[-2:] == ["3", "3"], jobs

    # a second attach into the same folder refreshes it; the other commands take -n too
    again = _cli(bed, "attach", "k8s-attach", "-n", NS, cwd=fresh, timeout=300)
    assert again.returncode == 0 and "chief Job Complete" in again.stdout, again.stdout + again.stderr
    status = _cli(bed, "status", "--dir", str(run), "-n", NS, cwd=fresh, timeout=120)
    assert status.returncode == 0 and "chief" in status.stdout, status.stdout + status.stderr
    results = _cli(bed, "results", "--dir", str(run), "--format", "json", cwd=fresh, timeout=300)
    assert [t["trial_id"] for t in json.loads(results.stdout)["trials"]] == [t["trial_id"] for t in trials]

    pods = [p["metadata"]["name"] for p in bed.kubectl_json("get", "pods", "-n", NS, "-l",
                                                            "tunecluster.io/experiment=k8s-attach")["items"]]
    down = _cli(bed, "down", "--dir", str(run), cwd=fresh, timeout=300)
    assert down.returncode == 0 and "logs of" in down.stdout, down.stdout + down.stderr
    saved = sorted(p.stem for p in (run / "logs").glob("*.log"))
    assert sorted(p for p in pods if not p.endswith("-pull")) == [p for p in saved if p in pods] and saved
    chief_log = _cli(bed, "logs", "chief", "--dir", str(run), cwd=fresh, timeout=120)
    assert chief_log.returncode == 0 and chief_log.stdout.strip(), chief_log.stderr  # from the saved copy
    assert _leftovers(bed, "k8s-attach") == []


def test_a_kept_volume_is_not_resumed_silently(bed, registry_image, tmp_path):  # noqa: F811
    spec = _spec(tmp_path, "k8s-kept", max_trials=2, epochs=1, image_name=registry_image)
    up = _cli(bed, "up", "-f", str(spec), "--backend", "kubernetes", "-n", NS, "--dir", "run", "--no-confirm",
              cwd=tmp_path)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    down = _cli(bed, "down", "--dir", "run", "--keep-volume", cwd=tmp_path, timeout=300)
    assert down.returncode == 0, down.stderr
    again = _cli(bed, "up", "-f", str(spec), "--backend", "kubernetes", "-n", NS, "--dir", "run", "--force",
                 cwd=tmp_path, timeout=120)
    assert again.returncode == 2 and "k8s-kept-shared" in again.stderr and "--resume" in again.stderr, again.stderr
    assert Path(tmp_path / "run" / "results.json").is_file()  # the earlier run folder was not replaced
    bed.kubectl("delete", "pvc", "k8s-kept-shared", "-n", NS, "--wait=true")
    assert _leftovers(bed, "k8s-kept") == []
