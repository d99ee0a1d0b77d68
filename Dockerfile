# syntax=docker/dockerfile:1
# The doris-operator image: a wheel built from this checkout, installed with its dependencies into a venv,
# copied into a slim Python runtime that runs as a numeric non-root user. Nothing writes outside /tmp, so
# the container runs with readOnlyRootFilesystem: true (mount an emptyDir at /tmp).
#
#   docker build -t doris-operator:0.1.0 .
#   docker run --rm -i doris-operator:0.1.0 render -f - < examples/doriscluster-sample.yaml

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build: the wheel, then a venv with it and its dependencies -----------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install /wheels/*.whl \
    && /opt/venv/bin/python -m pip uninstall --yes setuptools pip
# pip install compiled the .pyc files: kept, they make start-up faster and nothing needs to write them

# ---- runtime ----------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# global ARGs are only seen by FROM lines: declare it again for the label
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="doris-operator" \
      org.opencontainers.image.description="A Kubernetes operator for Apache Doris that accepts the official DorisCluster manifests unchanged" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

WORKDIR /tmp
USER 65532:65532

# 8080: /metrics, /healthz, /readyz; 9443: the admission webhook (doris-operator run --webhook)
EXPOSE 8080 9443

ENTRYPOINT ["doris-operator"]
CMD ["run"]
