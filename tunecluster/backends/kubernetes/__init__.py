"""The Kubernetes backend: the ClusterPlan as plain objects (`render.py`), applied and deleted
with server-side apply (`apply.py`), pods and Jobs read with watches (`pods.py`), the search
followed from the chief's state (`follow.py`), files off the volume (`transfer.py`), the TensorBoard
port-forward (`forward.py`), the Role a user needs (`rbac.py`), and the commands (`backend.py`)."""
