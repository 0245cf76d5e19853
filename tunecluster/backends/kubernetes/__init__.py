"""The Kubernetes backend: the ClusterPlan as plain objects (`render.py`), applied and deleted
with server-side apply (`apply.py`), pods and Jobs read with watches (`pods.py`), the search
followed from the chief's state (`follow.py`), files off and onto the volume through a small helper
pod (`transfer.py`, `upload.py`, `data_check.py`, `helper_pod.py`, `pod_side.py`, `exec_stream.py`), the TensorBoard
port-forward (`forward.py`), the Role a user needs (`rbac.py`), and the commands (`backend.py`)."""
