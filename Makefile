# Local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)
# built from Go modules; see docs/local-control-plane.md.
PYTHON ?= .venv/bin/python
CLUSTER_STATE_DIR ?= .tmp/cluster
NODES ?= 3
POD_READY_DELAY ?= 0
LOCALCLUSTER = $(PYTHON) hack/localcluster.py

.PHONY: cluster-build cluster-up cluster-down cluster-status cluster-env

cluster-build:
	$(LOCALCLUSTER) build

cluster-up:
	$(LOCALCLUSTER) up --state-dir $(CLUSTER_STATE_DIR) --nodes $(NODES) --pod-ready-delay $(POD_READY_DELAY)

cluster-down:
	$(LOCALCLUSTER) down --state-dir $(CLUSTER_STATE_DIR)

cluster-status:
	$(LOCALCLUSTER) status --state-dir $(CLUSTER_STATE_DIR)

cluster-env:
	@$(LOCALCLUSTER) env --state-dir $(CLUSTER_STATE_DIR)

# ---- project -------------------------------------------------------------------------------------------
.PHONY: venv lint test test-fast crds helm prometheus demo lock

VENV_STAMP = .venv/.installed

# The runtime dependencies come from requirements.lock, hash-checked, exactly as the image installs them;
# then the project (editable), its dev extra and the simulator.
$(VENV_STAMP): pyproject.toml sim/pyproject.toml requirements.lock
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
	.venv/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	.venv/bin/python -m pip install --quiet -e '.[dev]' -e ./sim
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

crds: venv  ## regenerate config/crd, the chart's copy, the plain manifests and the field reference
	$(PYTHON) -m doris_operator.api.crdgen
	$(PYTHON) deploy/generate.py
	$(PYTHON) -m doris_operator.api.docgen

helm: venv  ## build helm from the Go module proxy (cached)
	$(PYTHON) hack/helm.py

prometheus: venv  ## build promtool and prometheus, fetch the Prometheus Operator CRDs (cached)
	$(PYTHON) hack/prometheus.py

lint: venv
	$(PYTHON) -m ruff check src sim tests hack bench deploy
	$(PYTHON) -m ruff format --check src sim tests hack bench deploy
	$(PYTHON) -m mypy

# Everything CI runs: lint, types, unit and golden tests, and the tests on the local control plane
# (its binaries are built from Go modules on first use and cached under ~/.cache/doris-operator).
test: lint
	$(PYTHON) -m pytest -ra

test-fast: venv
	$(PYTHON) -m pytest -ra -m "not cluster"

# Regenerate the hashed lock files of the runtime dependencies and of the build backend (uv from PyPI).
UV_COMPILE = .venv/bin/uv pip compile --generate-hashes --python-version 3.11 --universal --quiet \
	--custom-compile-command "make lock"
lock: venv
	test -x .venv/bin/uv || .venv/bin/python -m pip install --quiet uv
	$(UV_COMPILE) pyproject.toml -o requirements.lock
	printf 'setuptools>=69\nwheel\n' | $(UV_COMPILE) - -o requirements-build.lock

demo: venv
	$(PYTHON) hack/demo.py $(ARGS)
