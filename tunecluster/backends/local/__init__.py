"""The local backend: the chief and the workers as processes on this machine (`backend.py`),
started and supervised by `processes.py`, their recorded states read by `recorded.py`."""
