"""How the roles run: the runtime every backend starts.

    plan.py         the ClusterPlan: roles, environment, port, folder, resources, secrets
    run_secrets.py  every oracle token and TLS certificate
    auth.py         the token interceptor, TLS credentials and channels to the chief
    leases.py       trial leases renewed by heartbeats
    work.py         the work board: trainings (executions, confirmation runs) and their results
    control.py      tunecluster's control RPCs beside Keras Tuner's (heartbeats, work, export)
    health.py       the image's health check
    chief/          the chief role (oracle server)
    worker/         the worker role (trainings)
"""
