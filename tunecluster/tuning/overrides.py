"""Command-line options that change a spec (`up --workers 4 --max-trials 20 ...`), applied
through the spec's own validation, so an override is checked like the file it overrides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tunecluster.tuning.spec import Experiment, validate_spec


@dataclass
class Overrides:
    workers: Optional[int] = None
    max_trials: Optional[int] = None
    epochs: Optional[int] = None
    tuner: Optional[str] = None
    seed: Optional[int] = None
    backend: Optional[str] = None
    insecure: Optional[bool] = None
    tls: Optional[bool] = None
    confirm: Optional[bool] = None
    confirm_top: Optional[int] = None
    confirm_repeats: Optional[int] = None
    holdout: Optional[float] = None
    kubernetes_image: Optional[str] = None
    worker_gpus: Optional[int] = None  # cluster.kubernetes.worker.gpus (nvidia.com/gpu per worker pod)
    workers_per_gpu: Optional[int] = None  # cluster.workers_per_gpu (0: unset, every worker sees every GPU)
    max_time: Optional[str] = None  # tuner.max_time: seconds or 90s / 30m / 8h

    def apply(self, spec: Experiment) -> Experiment:
        raw = spec.model_dump(mode="json")
        if self.workers is not None:
            raw["cluster"]["workers"] = self.workers
        if self.backend is not None:
            raw["cluster"]["backend"] = self.backend
        if self.max_trials is not None:
            raw["tuner"]["max_trials"] = self.max_trials
        if self.epochs is not None:
            raw["fit"]["epochs"] = self.epochs
            raw["tuner"]["hyperband"]["max_epochs"] = self.epochs
            raw["tuner"]["asha"]["max_epochs"] = self.epochs
            raw["tuner"]["asha"]["min_epochs"] = min(raw["tuner"]["asha"]["min_epochs"], self.epochs)
        if self.tuner is not None:
            raw["tuner"]["kind"] = self.tuner
        if self.seed is not None:
            raw["tuner"]["seed"] = self.seed
        if self.max_time is not None:
            raw["tuner"]["max_time"] = self.max_time
        if self.insecure:
            raw["cluster"]["insecure"] = True
        if self.tls:
            raw["cluster"]["tls"] = True
        if self.confirm is not None:
            raw["confirm"]["enabled"] = self.confirm
        if self.confirm_top is not None:
            raw["confirm"]["top"] = self.confirm_top
        if self.confirm_repeats is not None:
            raw["confirm"]["repeats"] = self.confirm_repeats
        if self.holdout is not None:
            raw["data"]["test_fraction"] = self.holdout
        if self.kubernetes_image is not None:
            raw["cluster"]["kubernetes"]["image"] = self.kubernetes_image
        if self.worker_gpus is not None:
            raw["cluster"]["kubernetes"]["worker"]["gpus"] = self.worker_gpus
        if self.workers_per_gpu is not None:
            raw["cluster"]["workers_per_gpu"] = self.workers_per_gpu or None
        from tunecluster.tuning.spec_stages import apply_stages

        raw = apply_stages(raw, max_trials_given=self.max_trials is not None, tuner_given=self.tuner is not None)
        return validate_spec(raw, "command-line options")
