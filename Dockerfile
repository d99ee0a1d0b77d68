# syntax=docker/dockerfile:1
# The doris-operator image: the runtime dependencies from requirements.lock (exact versions, every file
# checked against its sha256: pip --require-hashes) and a wheel built from this checkout, in a venv copied
# into a slim Python runtime that runs as a numeric non-root user. Nothing writes outside /tmp, so the
# container runs with readOnlyRootFilesystem: true (mount an emptyDir at /tmp).
#
#   docker build -t doris-operator:0.1.0 .
#   docker run --rm -i doris-operator:0.1.0 render -f - < examples/doriscluster-sample.yaml
#
# The base image is pinned by digest (a tag can be pushed again; a digest can't). Update both together:
#   docker buildx imagetools inspect python:3.11.11-slim-bookworm   # the index digest
# requirements.lock and requirements-build.lock are regenerated with `make lock` (uv pip compile).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

# ---- build: the locked dependencies into a venv, then the wheel of this checkout -------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY requirements.lock requirements-build.lock ./
# The build backend (setuptools, wheel) is locked too: no unpinned download through build isolation.
RUN python -m pip install --require-hashes --no-deps -r requirements-build.lock \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary :all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check \
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
