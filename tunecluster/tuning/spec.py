"""The experiment spec (`tunecluster.yaml`): pydantic models, loading, and one-line errors.

Every field has a default, so an empty file is a valid spec (it runs nothing useful without a
hypermodel, which is why `tunecluster up` falls back to an embedded example when there is no spec
file). Unknown keys, wrong types and out-of-range values are refused with one line that names the
field and says what is allowed.

Example::

    >>> spec = Experiment.model_validate({"name": "demo", "tuner": {"kind": "bayesian"}})
    >>> spec.tuner.max_trials
    10
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunecluster import __version__
from tunecluster.core.errors import UsageError
from tunecluster.tuning.pod_overrides import _DNS_SUBDOMAIN, PodOverrides, RoleOverrides, Toleration  # noqa: F401
from tunecluster.tuning.spec_final import FINAL, FinalSpec
from tunecluster.tuning.spec_stages import STAGES, Stages
from tunecluster.tuning.spec_hypermodel_args import HYPERMODEL_ARGS, HypermodelArgs
from tunecluster.tuning.spec_stopping import CheckpointFields, StoppingFields

TunerKind = Literal["random", "grid", "bayesian", "hyperband", "asha"]
Backend = Literal["local", "compose", "kubernetes"]
Strategy = Literal["auto", "default", "mirrored", "one_device"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSpec(_Section):
    """Where the training data comes from and how it is split."""

    csv: Optional[str] = Field(None, description="CSV file (relative to the spec file); the header names the columns.")
    target: str = Field("Outcome", description="The label column of the CSV.")
    loader: Optional[str] = Field(None, description='"module:function" or "file.py:function" returning '
                                  "(x_train, y_train, x_val, y_val[, x_test, y_test]) arrays or tf.data datasets.")
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Held-out rows the search never sees.")
    split_seed: int = Field(42, description="random_state of the train/validation/test split.")

    @model_validator(mode="after")
    def _one_source(self) -> "DataSpec":
        if self.csv and self.loader:
            raise ValueError("give either data.csv or data.loader, not both")
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "data.validation_fraction + data.test_fraction must leave at least 10% for training"
            )
        return self


class HyperbandSpec(_Section):
    max_epochs: int = Field(10, ge=1)
    factor: int = Field(3, ge=2)
    hyperband_iterations: int = Field(1, ge=1)


class BayesianSpec(_Section):
    num_initial_points: Optional[int] = Field(
        None, ge=1, description="Random trials before the Gaussian process; default 3 x #hyperparameters."
    )
    alpha: float = Field(1e-4, gt=0)
    beta: float = Field(2.6, gt=0)


class TunerSpec(StoppingFields):
    """Which Keras Tuner oracle runs on the chief and what it optimises."""

    kind: TunerKind = "random"
    objective: str = "val_accuracy"
    direction: Literal["max", "min"] = "max"
    max_trials: int = Field(10, ge=1)
    executions_per_trial: int = Field(
        1, ge=1, le=100, description="Trainings per trial, spread over the workers like trials; the "
        "trial's score is their mean (each execution's seed comes from seed, trial id and index)."
    )
    score: Literal["best_epoch", "last_epoch"] = Field(
        "best_epoch", description="Which epoch's value scores a trial: its best epoch (Keras Tuner's "
        "choice, optimistic) or its last. Both are recorded."
    )
    seed: Optional[int] = 1
    max_retries_per_trial: int = Field(0, ge=0)
    max_consecutive_failed_trials: int = Field(3, ge=1)
    hyperband: HyperbandSpec = Field(default_factory=HyperbandSpec)
    bayesian: BayesianSpec = Field(default_factory=BayesianSpec)


class FitSpec(CheckpointFields):
    """How each trial trains."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    early_stopping_patience: Optional[int] = Field(None, ge=1)
    verbose: int = Field(0, ge=0, le=2)
    tensorboard: bool = Field(
        True, description="Log each trial's epochs and hyperparameters under <run>/tensorboard (HParams)."
    )
    checkpoints: Literal["top", "all"] = Field(
        "top", description="Which search trainings write their weights: 'top' those that can still rank "
        "among the best max(3, confirm.top) trials (always the best trial; Hyperband: every training, its "
        "next rounds start from them), 'all' every one, as Keras Tuner does."
    )


class ConfirmSpec(_Section):
    """The confirmation stage: after the search, retrain the best configurations with fresh seeds."""

    enabled: bool = Field(True, description="Retrain the top configurations after the search (`up --no-confirm` skips).")
    top: int = Field(3, ge=1, le=100, description="How many of the best configurations are retrained.")
    repeats: int = Field(3, ge=1, le=100, description="Trainings per confirmed configuration.")


class Resources(_Section):
    """Requests (= limits) of one role's container; `gpus` asks for `nvidia.com/gpu`."""

    cpu: Optional[str] = Field(None, description='CPU request and limit, e.g. "2" or "500m".')
    memory: Optional[str] = Field(None, description='Memory request and limit, e.g. "4Gi".')
    gpus: int = Field(0, ge=0, le=16, description="nvidia.com/gpu per pod (workers).")

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?", str(value)):
            raise ValueError('write a Kubernetes quantity such as "2", "500m", "4Gi"')
        return None if value is None else str(value)


class KubernetesSpec(_Section):
    """Where and how the Kubernetes backend runs (`tunecluster up --backend kubernetes`)."""

    namespace: Optional[str] = Field(None, description="Default: the kubeconfig context's namespace.")
    image: str = Field(f"tunecluster:{__version__}", description="Every pod's image (default: `build --push`'s).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list, description="Registry Secrets on every pod "
                                          "(`kubectl create secret docker-registry NAME ...`).")
    code: Literal["auto", "project", "image"] = Field(
        "auto", description="Where the pods find the user's code: 'project' carries the project folder of "
        "the hypermodel/run_trial/loader (ConfigMaps, unpacked into /code); 'image' means the image has it "
        "(module refs are not checked on this machine); 'auto' carries local files and modules, not those "
        "installed in site-packages.")
    project_dir: Optional[str] = Field(None, description="The folder carried to the pods (default: the folder "
                                       "above the code's top package, or the code file's folder).")
    code_limit_kib: int = Field(
        4096, ge=16, le=16384, description="Largest compressed project carried to the pods; beyond it bake "
        "the code into the image (code: image).")
    code_file_limit_kib: int = Field(512, ge=1, le=16384, description="Larger non-Python files are left out of "
                                     "the carried project (data belongs on the volume: `tunecluster upload`).")
    storage_class: Optional[str] = Field(None, description="StorageClass of the shared volume; default: the cluster's.")
    storage_size: str = Field("1Gi", description="Size of the shared volume.")
    access_mode: Literal["auto", "ReadWriteMany", "ReadWriteOnce"] = Field(
        "auto", description="ReadWriteMany when workers may land on several nodes; ReadWriteOnce pins every "
        "pod of the experiment to one node; auto: decided at `up` from the StorageClass (or the existing "
        "claim), ReadWriteMany when rendered offline.")
    existing_claim: Optional[str] = Field(None, description="Use this PersistentVolumeClaim instead of making one.")
    claim_sub_path: str = Field(
        "tunecluster/{experiment}", description="With existing_claim: the folder of the claim this experiment "
        "uses ('' = the claim's root; {experiment} is replaced by the name).")
    chief: Resources = Field(default_factory=lambda: Resources(cpu="1", memory="1Gi"))
    worker: Resources = Field(default_factory=lambda: Resources(cpu="1", memory="2Gi"))
    node_selector: dict[str, str] = Field(default_factory=dict, description="Unless pod_overrides.<role> has one.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Unless pod_overrides.<role> has them.")
    pod_overrides: PodOverrides = Field(default_factory=PodOverrides)
    service_account: Optional[str] = None
    queue_name: Optional[str] = Field(
        None, description="A Kueue LocalQueue: the Jobs carry kueue.x-k8s.io/queue-name and start suspended "
        "until Kueue admits them.")
    unschedulable_grace_seconds: float = Field(
        90.0, ge=0, le=86400, description="How long a pod may stay unschedulable before `up` reports it "
        "(the cluster autoscaler adding a node extends it).")
    ttl_seconds_after_finished: Optional[int] = Field(
        86400, ge=0, le=31536000, description="Finished Jobs (and their pods) are deleted after this long; "
        "null keeps them until `tunecluster down`.")
    active_deadline_seconds: Optional[int] = Field(None, ge=1, description="Jobs fail after running this long.")
    tensorboard: bool = Field(False, description="Also run a TensorBoard Deployment on the volume.")
    inline_data_limit_kib: int = Field(
        512, ge=0, le=900, description="Data files up to this size travel in the ConfigMap; larger ones must "
        "already be on the volume or in the image (absolute paths).")

    @field_validator("namespace", "existing_claim", "service_account")
    @classmethod
    def _dns_label(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
            raise ValueError("use a DNS label: lowercase letters, digits and '-', at most 63")
        return value

    @field_validator("image_pull_secrets")
    @classmethod
    def _secret_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(_DNS_SUBDOMAIN, name):
                raise ValueError(f"{name!r} is not a Secret name (lowercase letters, digits, '-' and '.')")
        if len(set(value)) != len(value):
            raise ValueError("a Secret is named twice")
        return value

    @field_validator("queue_name")
    @classmethod
    def _queue(cls, value: Optional[str]) -> Optional[str]:
        if value is None or re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", value):
            return value
        raise ValueError("name a Kueue LocalQueue of the namespace (`kubectl get localqueues`)")

    @field_validator("claim_sub_path")
    @classmethod
    def _sub_path(cls, value: str) -> str:
        value = value.strip("/")
        if ".." in value.split("/") or not re.fullmatch(r"[A-Za-z0-9_.{}/-]*", value):
            raise ValueError("a relative folder inside the claim (letters, digits, '-', '_', '.', '/'; no '..'), "
                             "e.g. tunecluster/{experiment}")
        return value


class ClusterSpec(_Section):
    """How many workers, where they run, and how each uses its devices."""

    backend: Backend = "local"
    workers: int = Field(2, ge=1, le=256)
    strategy: Strategy = Field("auto", description="tf.distribute strategy inside each worker.")
    tf_threads: Optional[int] = Field(
        None, ge=1, description="TensorFlow intra-op threads per worker; default: cores / workers."
    )
    workers_per_gpu: Optional[int] = Field(
        None, ge=1, le=64,
        description="Run this many workers on each GPU (local backend: each worker sees one GPU, "
        "with memory growth); default: every worker sees every GPU.",
    )
    port: Optional[int] = Field(None, ge=1, le=65535, description="Oracle port; default: a free one.")
    idle_backoff_max: float = Field(1.0, gt=0, le=30, description="Longest sleep between IDLE answers.")
    heartbeat_interval: float = Field(
        2.0, ge=0.05, le=60, description="Seconds between a worker's heartbeats (they renew its trial's lease)."
    )
    lease_timeout: float = Field(
        30.0, gt=0, le=3600, description="A trial whose worker sent no heartbeat for this long goes back to the queue.")
    heartbeat_budget: float = Field(100.0, ge=1, le=100000, description="Heartbeat calls/s the chief asks of all "
                                    "workers: past it, the interval and lease_timeout grow with the worker count.")
    max_restarts: int = Field(
        5, ge=0, le=1000, description="Restarts allowed per role (local backend) before it is given up."
    )
    chief_timeout: float = Field(
        300.0, gt=0, le=86400,
        description="How long a worker keeps retrying an unreachable chief before it exits.",
    )
    insecure: bool = Field(
        False, description="Serve the oracle without a token (lets unmodified Keras Tuner workers join)."
    )
    tls: bool = Field(False, description="Encrypt the oracle port with a certificate made for this run.")
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec)

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self):
        if self.lease_timeout < 3 * self.heartbeat_interval:
            raise ValueError(
                f"lease_timeout ({self.lease_timeout:g} s) must be at least 3 x heartbeat_interval "
                f"({self.heartbeat_interval:g} s), or healthy workers lose their trials"
            )
        return self


class Experiment(_Section):
    """A whole experiment: what is searched, on which data, and on which cluster."""

    name: str = Field("experiment", description="Names the run directory and the cluster objects.")
    hypermodel: Optional[str] = Field(
        None, description='"module:function" or "path/to/file.py:function" building a Keras model from hp.'
    )
    hypermodel_args: HypermodelArgs = HYPERMODEL_ARGS
    run_trial: Optional[str] = Field(
        None, description='Instead of a hypermodel: "module:function" or "file.py:function" that runs one '
        "training with no Keras model (scikit-learn, XGBoost, any Python): run_trial(hp[, data[, seed]]) "
        "returns the objective's value, a dict of metrics, or a list of per-epoch dicts.",
    )
    data: DataSpec = Field(default_factory=DataSpec)
    tuner: TunerSpec = Field(default_factory=TunerSpec)
    stages: Stages = STAGES
    fit: FitSpec = Field(default_factory=FitSpec)
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    final: Optional[FinalSpec] = FINAL
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)

    @field_validator("name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", value):
            raise ValueError(
                "use 1-40 lowercase letters, digits and '-', starting and ending with a letter "
                "or digit (it names directories and cluster objects)"
            )
        return value

    @field_validator("hypermodel", "run_trial")
    @classmethod
    def _callable_ref(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[^:]+:[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError('write it as "module:function" or "path/to/file.py:function"')
        return value

    @model_validator(mode="after")
    def _one_trainer(self) -> "Experiment":
        if self.hypermodel and self.run_trial:
            raise ValueError("give either hypermodel (a Keras model per trial) or run_trial (a function that trains without one), not both")
        return self


def code_refs(spec: Experiment) -> list[tuple[Any, str, str]]:
    """The spec's references to user code as (section, attribute, name in messages): hypermodel or run_trial, data loader."""
    return [(spec, "hypermodel", "hypermodel"), (spec, "run_trial", "run_trial"), (spec.data, "loader", "data.loader")]


def _format_error(error: dict[str, Any], model: type[BaseModel]) -> str:
    """One line for the first pydantic error: the dotted field, what is wrong, what is allowed."""
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"][:-1])
        return f"{loc}: unknown key; allowed keys here: {', '.join(allowed)}"
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    if kind in ("literal_error", "enum"):
        return f"{loc}: {message} (got {error.get('input')!r})"
    if "input" in error and kind not in ("missing",) and not isinstance(error["input"], dict):
        return f"{loc}: {message} (got {error['input']!r})"
    return f"{loc}: {message}"


def _allowed_keys(model: type[BaseModel], path: tuple) -> list[str]:
    current: Any = model
    for part in path:
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            break
        current = next((a for a in (field.annotation, *get_args(field.annotation)) if hasattr(a, "model_fields")), None)
    fields = getattr(current, "model_fields", {})
    return sorted(fields)


def validate_spec(raw: Any, source: str = "spec") -> Experiment:
    """Validate a parsed mapping; raise UsageError with one line naming the field on failure."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: the top level must be a mapping of keys (name:, tuner:, ...)")
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UsageError(f"{source}: {_format_error(first, Experiment)}{suffix}") from None


def load_spec(path: str | Path) -> Experiment:
    """Read and validate a spec file, resolving relative data and model paths against its folder."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"spec file {path} not found; write one with `tunecluster init --example pima`")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UsageError(f"{path}: not valid YAML{where}: {problem}") from None
    spec = validate_spec(raw, str(path))
    return resolve_paths(spec, path.parent)


def resolve_paths(spec: Experiment, base: Path) -> Experiment:
    """Make the CSV path and a file-based hypermodel/run_trial/loader absolute, relative to `base`."""
    spec = spec.model_copy(deep=True)
    if spec.data.csv and not Path(spec.data.csv).is_absolute():
        spec.data.csv = str((base / spec.data.csv).resolve())
    if spec.cluster.kubernetes.code == "image":
        return spec  # code refs name paths in the image, as written
    for section, attr, _ in code_refs(spec):
        ref = getattr(section, attr)
        if ref:
            target, func = ref.rsplit(":", 1)
            if target.endswith(".py") and not Path(target).is_absolute():
                setattr(section, attr, f"{(base / target).resolve()}:{func}")
    return spec


def dump_spec(spec: Experiment) -> str:
    """The spec as YAML, every default written out (what `spec.yaml` in a run directory holds)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
