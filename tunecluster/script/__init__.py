"""Run an unmodified Keras Tuner script on a tunecluster run: `python -m tunecluster.script PATH
ARGS...` in every role (see `launcher`), started by `tunecluster up --script PATH`.

- `launcher`    the role's entry point: the script with its tuner routed through tunecluster
- `chief_role`  the chief serves the script's oracle (token, leases, state, resume) and exports
- `worker_role` Keras Tuner's client with the token, heartbeats, retries and SIGTERM handling
- `tuner_spec`  the run's spec from the script's name and, on the chief, its oracle
"""

from tunecluster.script.launcher import run_script

__all__ = ["run_script"]
