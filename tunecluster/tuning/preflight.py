"""Checks of a spec's inputs before anything starts or is written: the hypermodel (or run_trial)
reference and the data (a CSV's path, header, target column and numeric cells, or a loader)."""

from __future__ import annotations

from tunecluster.core.errors import UsageError
from tunecluster.tuning.spec import Experiment


def preflight(spec: Experiment) -> None:
    """Catch bad input before anything starts or is written: the hypermodel (or run_trial)
    reference and the CSV (its path, header, target column and numeric cells)."""
    from tunecluster.tuning.datasets import read_csv_checked
    from tunecluster.tuning.loader import check_callable_ref

    if spec.cluster.backend == "kubernetes" and spec.cluster.kubernetes.code == "image":
        # the code is in the image (cluster.kubernetes.code: image): this machine need not have it
        def check_callable_ref(ref: str, what: str = "hypermodel") -> None:  # noqa: F811
            if ":" not in ref:
                raise UsageError(f'{what} {ref!r}: write it as "module:function" or "file.py:function"')

    from tunecluster.tuning.spec_final import check_final

    check_final(spec)
    if spec.hypermodel_args and not spec.hypermodel:
        raise UsageError("hypermodel_args: only a hypermodel function takes them; remove them, or pass "
                         "fixed values to run_trial another way")
    if spec.run_trial:
        check_callable_ref(spec.run_trial, "run_trial")
    elif not spec.hypermodel:
        raise UsageError('hypermodel: the spec names no hypermodel; set hypermodel: "file.py:function" '
                         '(or run_trial: "file.py:function" to train without a Keras model)')
    else:
        check_callable_ref(spec.hypermodel)
        if spec.hypermodel_args and not (spec.cluster.backend == "kubernetes" and spec.cluster.kubernetes.code == "image"):
            from tunecluster.tuning.spec_hypermodel_args import check_source_accepts

            check_source_accepts(spec.hypermodel, spec.hypermodel_args)
    if spec.data.loader:
        check_callable_ref(spec.data.loader, "data.loader")
    elif spec.data.csv and not _in_the_pods(spec):
        read_csv_checked(spec.data.csv, spec.data.target)


def _in_the_pods(spec: Experiment) -> bool:
    """A Kubernetes spec's data.csv that is not on this machine names a file in the pods (on the
    volume or in the image): the backend checks it inside the cluster before `up` starts."""
    from pathlib import Path

    return spec.cluster.backend == "kubernetes" and not Path(spec.data.csv).exists()
