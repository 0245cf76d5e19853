"""tunecluster: distributed Keras Tuner searches with one command (local, compose, Kubernetes)."""

__version__ = "0.1.0"
