"""The bottom layer: what every other part of tunecluster uses and that uses nothing of theirs
(no TensorFlow, no gRPC).

    errors.py    UsageError (exit 2) and RunFailure (exit 1): one line that says what to do
    env.py       the environment contract of every role (Keras Tuner's switches and tunecluster's)
    rundir.py    the run folder's layout and atomic writes
    seeds.py     one seed per training
    network.py   free ports on this machine
    archives.py  unpacking tar streams from containers and pods, safely
"""
