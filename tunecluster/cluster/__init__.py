"""How roles run: the chief server, the worker loop, the cluster plan and the local backend."""
