"""What `up` refuses over an earlier experiment of the same name, the progress marks on the chief
Job, and `--image/--gpus/--build`/`--context` as each backend takes them (the Kubernetes
behaviour itself runs on the test bed: tests/e2e/test_kubernetes_attach.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tunecluster.backends import get_backend
from tunecluster.backends.base import ClusterAccess, UpOptions
from tunecluster.backends.image_record import write_record
from tunecluster.backends.kubernetes.job_progress import progress_marks
from tunecluster.backends.kubernetes.lifecycle import Presence, resume_note, start_refusal, when
from tunecluster.core.errors import UsageError
from tunecluster.core.rundir import RunDir, write_json
from tunecluster.tuning.examples import example_spec

STARTED = datetime(2026, 12, 2, 6, 0, tzinfo=timezone.utc)


def test_up_refuses_a_live_experiment_of_the_same_name_unless_resume():
    live = Presence("demo", "ml", chief_job=True, started=STARTED, claim=True, config=True)
    line = start_refusal(live, resume=False)
    assert line.startswith("experiment demo is running in namespace ml (started 2026-12-02 06:00 UTC")
    assert "`tunecluster attach demo -n ml`" in line and "--resume" in line and "`tunecluster down`" in line
    assert start_refusal(live, resume=True) is None
    assert resume_note(live) == "experiment demo is running in namespace ml; re-applying it and following it"


def test_up_refuses_a_finished_experiment_still_in_the_namespace():
    done = Presence("demo", "ml", chief_job=True, job_state="Complete", started=STARTED, claim=True)
    for resume in (False, True):
        assert "already ran in namespace ml (chief Job Complete" in start_refusal(done, resume=resume)


def test_a_kept_volume_is_never_resumed_silently():
    made_by_upload = Presence("demo", "ml", claim=True)  # `upload` before the first `up`: not a kept search
    assert start_refusal(made_by_upload, resume=False) is None and resume_note(made_by_upload) is None
    kept = Presence("demo", "ml", claim=True, claim_kept=True)
    line = start_refusal(kept, resume=False)
    assert "demo-shared" in line and "--resume" in line and "kubectl -n ml delete pvc demo-shared" in line
    assert start_refusal(kept, resume=True) is None
    assert resume_note(kept) == "resuming the search kept on the volume claim demo-shared"
    assert start_refusal(kept, resume=False, existing_claim=True) is None  # not its own claim
    assert start_refusal(Presence("demo", "ml"), resume=False) is None


def test_when_says_the_time_and_how_long_ago():
    assert when(STARTED, STARTED + timedelta(minutes=14)) == "2026-12-02 06:00 UTC, 14 min ago"
    assert when(STARTED, STARTED + timedelta(hours=5)).endswith("5 h ago")
    assert when(None) == "at an unknown time"


def test_progress_marks_for_the_chief_job():
    assert progress_marks(None) is None and progress_marks({"counts": {}}) is None
    marks = progress_marks({"max_trials": 40, "counts": {"completed": 10, "failed": 1, "invalid": 1, "running": 3}})
    assert marks == {"metadata": {
        "annotations": {"tunecluster.io/progress": "12/40 trials", "tunecluster.io/trials-done": "12",
                        "tunecluster.io/trials-total": "40"},
        "labels": {"tunecluster.io/trials-done": "12", "tunecluster.io/trials-total": "40"}}}
    finished = progress_marks({"max_trials": 4, "finished": True, "counts": {"completed": 4}})
    assert finished["metadata"]["annotations"]["tunecluster.io/progress"] == "4/4 trials, finished"


def _spec(backend: str):
    from tunecluster.tuning.overrides import Overrides

    return Overrides(backend=backend).apply(example_spec("pima-units"))


def test_kubernetes_takes_image_and_gpus_and_refuses_build(tmp_path):
    k8s = get_backend("kubernetes")
    spec, _ = k8s.apply_options(_spec("kubernetes"), UpOptions(image="reg.io/ml/demo:1", gpus="2"))
    assert spec.cluster.kubernetes.image == "reg.io/ml/demo:1" and spec.cluster.kubernetes.worker.gpus == 2
    with pytest.raises(UsageError, match="--gpus 'all': on Kubernetes give the number"):
        k8s.apply_options(_spec("kubernetes"), UpOptions(gpus="all"))
    with pytest.raises(UsageError, match="--build is for compose; .*tunecluster build --push"):
        k8s.apply_options(_spec("kubernetes"), UpOptions(build=True))
    # no --image: the digest `build --push` recorded for the project, unless the spec names an image
    reference = "reg.io/ml/demo@sha256:" + "b" * 64
    write_record(tmp_path, {"local": "demo:1", "reference": reference})
    spec, _ = k8s.apply_options(_spec("kubernetes"), UpOptions(project=tmp_path))
    assert spec.cluster.kubernetes.image == reference
    named = _spec("kubernetes").model_copy(deep=True)
    named.cluster.kubernetes.image = "mine:2"
    assert k8s.apply_options(named, UpOptions(project=tmp_path))[0].cluster.kubernetes.image == "mine:2"


def test_compose_takes_the_recorded_local_tag_and_local_refuses_an_image(tmp_path):
    write_record(tmp_path, {"local": "demo:1"})
    compose = get_backend("compose")
    _, options = compose.apply_options(_spec("compose"), UpOptions(project=tmp_path))
    assert options.image == "demo:1"
    _, options = compose.apply_options(_spec("compose"), UpOptions(project=tmp_path, build=True))
    assert options.image is None  # --build makes tunecluster:<version>, it does not overwrite the project's tag
    local = get_backend("local")
    for options in (UpOptions(image="x:1"), UpOptions(build=True)):
        with pytest.raises(UsageError, match="the local backend runs the roles as processes"):
            local.apply_options(_spec("local"), options)
    assert local.apply_options(_spec("local"), UpOptions(gpus="1"))[0].cluster.workers_per_gpu == 1
    assert local.apply_options(_spec("local"), UpOptions(gpus="all"))[0].cluster.workers_per_gpu is None
    with pytest.raises(UsageError, match="--gpus '2': the local backend gives each worker one GPU"):
        local.apply_options(_spec("local"), UpOptions(gpus="2"))


def test_context_and_namespace_are_for_kubernetes_runs_and_attach_too(tmp_path):
    for name in ("local", "compose"):
        with pytest.raises(UsageError, match=f"are for Kubernetes runs; this is a {name} run"):
            get_backend(name).use_cluster(ClusterAccess(namespace="ml"))
        get_backend(name).use_cluster(ClusterAccess())  # none given: fine
        with pytest.raises(UsageError, match="attach is for Kubernetes experiments"):
            get_backend(name).attach("demo", RunDir(tmp_path), ClusterAccess(), print, follow=False)


def test_a_commands_namespace_and_context_win_over_what_the_run_recorded(tmp_path, monkeypatch):
    from tunecluster.backends.kubernetes import backend as k8s_backend

    calls = []
    monkeypatch.setattr(k8s_backend, "connect", lambda context, ns, kubeconfig: calls.append((context, ns, kubeconfig)))
    run = RunDir(tmp_path)
    write_json(run.cluster, {"backend": "kubernetes", "namespace": "ml", "context": "prod", "kubeconfig": "/k"})
    k8s = get_backend("kubernetes")
    k8s.connect(run)
    k8s.use_cluster(ClusterAccess(context="staging", namespace="ml2"))
    k8s.connect(run)
    assert calls == [("prod", "ml", "/k"), ("staging", "ml2", "/k")]


def test_an_attached_spec_points_at_the_configmaps_files_copied_into_the_run_folder(tmp_path):
    from tunecluster.backends.kubernetes.lifecycle import localize
    from tunecluster.tuning.spec import validate_spec

    (tmp_path / "model.py").write_text("def build(hp): ...\n")
    (tmp_path / "diabetes.csv").write_text("a,b\n")
    pods = validate_spec({"name": "demo", "hypermodel": "/etc/tunecluster/model.py:build",
                          "data": {"csv": "/etc/tunecluster/diabetes.csv", "target": "b"},
                          "cluster": {"backend": "kubernetes"}})
    local = localize(pods, tmp_path)
    assert local.hypermodel == f"{tmp_path}/model.py:build" and local.data.csv == f"{tmp_path}/diabetes.csv"
    on_volume = validate_spec({"name": "demo", "hypermodel": "mymodels.net:build",
                               "data": {"csv": "/shared/data/big.csv", "target": "b"}})
    assert localize(on_volume, tmp_path) == on_volume  # module names and volume paths stay as they are
