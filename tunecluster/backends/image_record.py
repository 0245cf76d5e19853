"""What `tunecluster build` recorded in a project: `<project>/.tunecluster/image.json`, read by
`up` when no `--image` is given, so a pushed build runs as `registry/name@sha256:...` (Kubernetes)
and a local one under its tag (compose).

    {"local": "myproject:0.3.0", "pushed": "registry.example.com/ml/myproject:0.3.0",
     "reference": "registry.example.com/ml/myproject@sha256:...", "digest": "sha256:...",
     "gpu": false, "from": "tunecluster:0.1.0", "built_at": 1764650000.0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from tunecluster.core.rundir import read_json, write_json

RECORD = Path(".tunecluster") / "image.json"


def record_path(project: Path) -> Path:
    return Path(project) / RECORD


def write_record(project: Path, record: dict) -> Path:
    path = record_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return path


def read_record(project: Optional[Path]) -> dict:
    """The project's build record ({} when none)."""
    if project is None:
        return {}
    return read_json(record_path(project)) or {}


def kubernetes_image(spec, project: Optional[Path], explicit: Optional[str] = None) -> Optional[str]:
    """The image a Kubernetes pod of `spec` runs when it differs from the spec's: `explicit`
    (--image), else, while the spec names no image of its own (the default), the one `build --push`
    recorded for the project; None to keep the spec's."""
    from tunecluster.tuning.spec import KubernetesSpec

    if explicit or spec.cluster.kubernetes.image != KubernetesSpec.model_fields["image"].default:
        return explicit
    return recorded_image(project, pushed=True)


def recorded_image(project: Optional[Path], *, pushed: bool) -> Optional[str]:
    """The image `build` made for the project: the pushed digest reference (`pushed`), else the
    local tag; None when the project was never built (or, for `pushed`, never pushed)."""
    record = read_record(project)
    return record.get("reference") if pushed else record.get("local")
