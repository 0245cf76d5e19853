"""The chief role of a Keras Tuner script: where the script's `search()` would start Keras Tuner's
one-thread, unauthenticated server, tunecluster's chief serves the oracle the script built.

`ScriptChief` is the spec-driven `Chief` (thread pool, token or TLS, trial leases, atomic state,
resume, progress.json/results.json, clean exit) with the script's oracle in place of one built
from a spec. After the search it exports the best trial itself (`best/model.keras` from the
trial's checkpoint, `best/hyperparameters.json`, `best/metrics.json`), since the script's workers
speak Keras Tuner's protocol and never claim the export; then the script goes on, and its
`get_best_models()` / `get_best_hyperparameters()` read the chief's own, complete oracle.
"""

from __future__ import annotations

import logging
import os
import signal

from tunecluster.cluster.auth import read_security
from tunecluster.cluster.chief.server import Chief
from tunecluster.core.env import RoleEnv
from tunecluster.core.rundir import RunDir, write_atomic, write_json
from tunecluster.script.exits import RoleExit
from tunecluster.tuning.spec import Experiment, dump_spec

log = logging.getLogger("tunecluster.script")


class ScriptChief(Chief):
    """The chief, serving an oracle built by a user's script (see the module docstring)."""

    def __init__(self, spec: Experiment, run: RunDir, bind: str, port: int, oracle, **kwargs):
        # the script's workers never claim the export (Keras Tuner's protocol has no such call):
        # the chief exports after serving, so it waits for no exporter
        super().__init__(spec, run, bind, port, export_timeout=0.0, **kwargs)
        self.script_oracle = oracle

    def _build_oracle(self):
        return self.script_oracle  # the chief's _make_oracle reloads the saved search onto it


def serve_search(tuner, spec: Experiment, run: RunDir, role: RoleEnv, fit_args: tuple, fit_kwargs: dict) -> None:
    """The chief's `tuner.search(...)`: serve the search to its end, then export the best trial."""
    from tunecluster.script.tuner_spec import tuner_section

    spec = tuner_section(spec, tuner.oracle, fit_kwargs)
    write_atomic(run.spec, dump_spec(spec))  # status/results/report show the script's search
    chief = ScriptChief(spec, run, role.oracle_ip, role.oracle_port, tuner.oracle,
                        security=read_security(chief=True))
    chief.start()
    previous = signal.signal(signal.SIGTERM, lambda *_: chief.terminate())
    try:
        code = chief.serve_until_done()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0:  # SIGTERM before the end: the state is saved, the run resumable
        raise RoleExit(code)
    if chief.book.search_failed:  # e.g. too many failed trials: nothing for the script to go on with
        raise RoleExit(1, f"the search ended early: {chief.book.search_failed}")
    with chief.book.lock:
        chief.book.export_state, chief.book.exporter = "claimed", "chief"
    try:
        metrics = export_best(tuner, run, spec, fit_kwargs)
        state, message = "done", None
        log.info("exported trial %s to %s", metrics["trial_id"], run.best)
    except Exception as exc:  # the search itself is done: say why there is no best model
        state, message = "failed", f"{type(exc).__name__}: {exc}"
        log.error("exporting the best model failed: %s", message)
    with chief.book.lock:
        chief.book.export_state, chief.book.export_message = state, message
    chief.write_state(finished=True)


def _validation_data(fit_kwargs: dict):
    data = fit_kwargs.get("validation_data")
    if isinstance(data, (tuple, list)) and len(data) >= 2:
        return data[0], data[1]
    return None


def export_best(tuner, run: RunDir, spec: Experiment, fit_kwargs: dict) -> dict:
    """`best/model.keras` (the best trial's checkpoint, through the script's own tuner),
    `best/hyperparameters.json` and `best/metrics.json` (written last); returns the metrics."""
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise RuntimeError("no completed trial to export")
    trial = best[0]
    run.best.mkdir(parents=True, exist_ok=True)
    validation = None
    try:
        model = tuner.load_model(trial)
    except Exception as exc:  # e.g. a run_trial that saved no checkpoint
        log.warning("no best/model.keras: the best trial's model cannot be loaded (%s: %s); a run_trial "
                    "that trains its own model should call self.save_model(trial.trial_id, model) or "
                    "super().run_trial(...)", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    else:
        tmp = run.best / ".model.partial.keras"
        model.save(tmp)
        os.replace(tmp, run.best_model)
        data = _validation_data(fit_kwargs)
        if data is not None:
            result = model.evaluate(data[0], data[1], batch_size=spec.fit.batch_size, verbose=0, return_dict=True)
            validation = {k: float(v) for k, v in result.items()}
    values = dict(trial.hyperparameters.values)
    write_json(run.best_hyperparameters, {k: v for k, v in values.items() if not k.startswith("tuner/")})
    metrics = {
        "trial_id": trial.trial_id,
        "objective": {"name": spec.tuner.objective, "direction": spec.tuner.direction,
                      "score": trial.score, "best_step": trial.best_step},
        "validation": validation,
        "hyperparameters": {k: v for k, v in values.items() if not k.startswith("tuner/")},
        "all_hyperparameters": values,
        "source": "script",
    }
    write_json(run.best_metrics, metrics)
    return metrics
