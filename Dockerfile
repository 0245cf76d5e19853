# The tunecluster image: one image for the chief and every worker (compose and Kubernetes).
#
#   docker build -t tunecluster:0.1.0 .
#
# Build args:
#   BASE       any Debian or Ubuntu image with python3 (3.10-3.13) and its venv module. Default
#              python:3.11-slim; a GPU base such as tensorflow/tensorflow:2.21.0-gpu (with
#              VENV_ARGS=--system-site-packages to reuse its TensorFlow); or a base made without a
#              registry (docs/compose.md: debootstrap + docker import).
#   VENV_ARGS  extra arguments of `python3 -m venv /opt/venv`.
# Offline builds: wheels in docker/wheels/ (`docker/fetch-wheels`) are installed with --no-index;
# with none there, pip uses the index. Nothing from the host (CA bundle, token) enters the image.
#
# Layers: the dependencies (keyed on BASE, docker/wheels and pyproject.toml) come before the
# project's source, so a source change rebuilds only the small project layers.
ARG BASE=python:3.11-slim

FROM ${BASE} AS deps
ARG VENV_ARGS=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY docker/pip /usr/local/bin/venv-pip
COPY docker/wheels/ /wheels/
COPY pyproject.toml /src/pyproject.toml
# An empty stub of the package: installs exactly the dependencies pyproject.toml declares.
# TensorFlow's C++ headers (430 MB, for compiling custom ops) are dropped.
RUN python3 -m venv ${VENV_ARGS} /opt/venv \
 && mkdir -p /src/tunecluster && touch /src/tunecluster/__init__.py /src/README.md \
 && venv-pip install /src \
 && /opt/venv/bin/pip uninstall --yes --quiet tunecluster \
 && rm -rf /src /opt/venv/lib/python3*/site-packages/tensorflow/include

FROM deps AS project
COPY pyproject.toml README.md /build/
COPY tunecluster /build/tunecluster
RUN venv-pip wheel --no-deps --wheel-dir /dist /build

FROM ${BASE}
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 HOME=/tunecluster/home \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A non-root user in group 0; the folders it writes are group-0 writable, so the image also runs
# as another uid with gid 0 (what the compose backend does for a non-root host user). A fresh
# named volume mounted at /tunecluster/runs takes this folder's owner and mode.
RUN useradd --uid 10001 --gid 0 --no-log-init --create-home --home-dir /tunecluster/home \
      --shell /usr/sbin/nologin tunecluster \
 && mkdir -p /tunecluster/runs /tunecluster/input \
 && chown -R 10001:0 /tunecluster && chmod -R g+rwX /tunecluster
COPY --from=deps /opt/venv /opt/venv
COPY --from=project /dist /tmp/dist
RUN pip install --no-deps --no-index --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
USER 10001:0
WORKDIR /tunecluster
EXPOSE 8000
# The chief is healthy when its oracle port answers; workers always report healthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "tunecluster.cluster.health"]
ENTRYPOINT ["tunecluster"]
CMD ["--help"]
