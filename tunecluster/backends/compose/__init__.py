"""The compose backend: the ClusterPlan as a docker compose project (`render.py`), its inputs
(`inputs.py`), the docker and compose tools (`docker_cli.py`), one run's containers and volume
(`project.py`), and `up`/`status`/`logs`/`pull`/`down` (`backend.py`)."""
