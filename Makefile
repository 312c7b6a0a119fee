# The two commands of the README contract: `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
# kind-up/e2e install the Prometheus stack (e2e/kind/monitoring.py) and check the alerting through the upgrade;
# MONITORING=0 leaves it out (a faster, smaller scenario; docs/e2e.md).
MONITORING ?= 1
export KUC_E2E_MONITORING := $(MONITORING)

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-22s %s\n", $$1, $$2}'

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet 'uv>=0.13'
	@# Precompiled: kubernetes_asyncio has ~900 modules, and PYTHONDONTWRITEBYTECODE may be set.
	$(UV) sync --locked --quiet --compile-bytecode
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## Create the virtualenv with the locked dependencies

.PHONY: fixture
fixture: ## Build (or reuse the cached) etcd, etcdctl, kube-apiserver and kube-controller-manager from the Go module proxy
	@for tool in etcd etcdctl kube-apiserver kube-controller-manager; do e2e/build-tool.sh $$tool >/dev/null; done

.PHONY: demo
demo: venv fixture ## A local control plane, a simulated master upgrade, all four controllers reacting (~1 min once the fixture is built)
	$(PY) -m e2e.demo

.PHONY: engine
engine: ## Make sure a container engine answers (as root on Debian: installs docker.io, starts dockerd)
	@e2e/engine.sh

.PHONY: image
image: venv ## Build kube-upgrade-controllers:<chart appVersion> (and :dev) and the example bundle image, offline
	@UV="$(UV)" e2e/image.sh

.PHONY: dist
dist: venv tools image ## The release's files in dist/: wheel, sdist, the chart (helm package), the image (docker save), the krew plugin (RELEASE_URL=...)
	@UV="$(UV)" e2e/dist.sh dist

.PHONY: kind-up
kind-up: venv image ## A kind cluster here (3 control planes + 2 workers at the old release, built offline) with the suite and a Prometheus stack installed (MONITORING=0: without the stack); writes .kind/env
	@e2e/kind/cluster.sh up
	@$(PY) -m e2e.kind.deploy

.PHONY: kind-upgrade
kind-upgrade: venv ## Roll every control plane to the new release with kubeadm, one at a time
	@$(PY) -m e2e.kind.upgrade control-planes

.PHONY: kind-upgrade-workers
kind-upgrade-workers: venv ## Drain, upgrade (kubeadm, kubelet) and uncordon each worker in turn
	@$(PY) -m e2e.kind.upgrade workers

.PHONY: kind-down
kind-down: ## Delete the kind cluster and everything it made (the engine keeps running)
	@e2e/kind/cluster.sh down

.PHONY: e2e
e2e: venv image ## kind-up, the rolling-upgrade scenario (e2e/suite), kind-down (also on failure; KEEP=1 keeps the cluster; MONITORING=0 without the Prometheus stack and its checks)
	@status=0; { e2e/kind/cluster.sh up && $(PY) -m e2e.kind.deploy && \
	  $(VENV)/bin/pytest e2e/suite -x -s -p no:cacheprovider; } || status=$$?; \
	if [ "$(KEEP)" = 1 ]; then echo "KEEP=1: the cluster stays up (. .kind/env; make kind-down when done)"; \
	else e2e/kind/cluster.sh down; fi; exit $$status

.PHONY: lint
lint: venv ## ruff (lint + format check), mypy --strict, import-linter contracts, shellcheck, hadolint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/shellcheck -x e2e/*.sh e2e/kind/*.sh .ci/run
	$(VENV)/bin/hadolint images/Dockerfile images/bundle.Dockerfile

.PHONY: test
test: venv fixture tools image lint verify-delta ## Everything: lint, the release delta's regeneration check, unit tests, integration tests on a real local control plane, the image's checks
	$(VENV)/bin/pytest

.PHONY: generate
generate: venv ## Write every list that names the controllers from the registry: console scripts and import-linter contracts (pyproject.toml), the chart's controller list and traits (_registry.tpl), values.schema.json's sections (make test checks they are current)
	$(PY) -m tests.registry_files

.PHONY: release-delta
release-delta: venv ## Regenerate the release delta (controllers/release_delta/data) from each minor's newest release, 1.33 on (Go; the go command's module proxy)
	$(PY) -m hack.release_delta generate

.PHONY: verify-delta
verify-delta: venv ## Read the releases the committed release delta names again and check that it regenerates byte for byte
	$(PY) -m hack.release_delta verify

.PHONY: unit
unit: venv ## Only the pure unit tests (no control plane)
	$(VENV)/bin/pytest tests/unit

.PHONY: cluster-up
cluster-up: venv fixture ## Start a local control plane in the background; writes .cluster/env
	$(PY) -m e2e.controlplane up --dir .cluster

.PHONY: cluster-down
cluster-down: venv ## Stop the local control plane and delete its data
	$(PY) -m e2e.controlplane down --dir .cluster

.PHONY: bench-tainter
bench-tainter: venv fixture ## Benchmark: node-tainter taints 1,000 outdated nodes vs a kubectl taint loop
	$(PY) -m bench.tainter

.PHONY: capi-proof
capi-proof: venv fixture ## The upgrade gate holds Cluster API's own core manager (v1.14.2, built from the module proxy: ~20 min cold) on a topology upgrade until the ack (not in make test)
	@e2e/build-tool.sh capi-manager >/dev/null
	$(PY) -m e2e.capi_proof

.PHONY: tools
tools: ## Build (or reuse the cached) helm, promtool and the Prometheus stack (prometheus, alertmanager, prometheus-operator, kube-state-metrics) from the Go module proxy (the chart and alerting tests use them)
	@for tool in helm promtool prometheus alertmanager prometheus-operator kube-state-metrics; do e2e/build-tool.sh $$tool >/dev/null; done

.PHONY: chart-lint
chart-lint: tools ## helm lint + helm template of the chart, with the default and the all-enabled values
	@helm=$$(e2e/build-tool.sh helm); chart=charts/kube-upgrade-controllers; \
	for values in "" "-f $$chart/ci/all-enabled-values.yaml" "-f $$chart/ci/directory-mode-values.yaml" \
	  "-f $$chart/ci/combined-values.yaml"; do \
	  $$helm lint --strict $$chart $$values && $$helm template kuc $$chart $$values >/dev/null; done

.PHONY: promtool
promtool: venv tools ## promtool check rules + test rules on the chart's alerts (rendered from the chart)
	@dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; promtool=$$(e2e/build-tool.sh promtool); \
	$(PY) -m tests.chart_tools "$$dir" >/dev/null && \
	$$promtool check rules "$$dir/kube-upgrade-controllers.rules.yaml" && \
	$$promtool test rules "$$dir/kube-upgrade-controllers.tests.yaml"

.PHONY: bench-agreement
bench-agreement: venv fixture ## Benchmark: agreement reaction and memory at 5,000 nodes
	$(PY) -m bench.agreement

.PHONY: bench-uso
bench-uso: venv fixture ## Benchmark: uso-runner vs kubectl get|replace, kube-storage-version-migrator, kube-controller-manager's in-tree migrator, a bare PUT loop
	$(PY) -m bench.uso

.PHONY: bench-pace
bench-pace: venv fixture tools ## Benchmark (~35 min on a quiet machine): every migration method on 20,000 real rewrites, its rate and a steady other client's p99 vs idle; the table and bench/pace.png
	e2e/build-tool.sh storage-version-migrator >/dev/null
	$(PY) -m bench.pace

.PHONY: bench-readiness
bench-readiness: venv ## Benchmark: one upgrade-readiness evaluation at 5,000 nodes, 1,000 PDBs, 3 apiservers' /metrics
	$(PY) -m bench.readiness
.PHONY: bench-apf
bench-apf: venv fixture tools ## Benchmark: a steady other client's p50/p99 idle and during a migration, without and with the chart's APF FlowSchema
	$(PY) -m bench.apf

.PHONY: bench-image
bench-image: venv fixture image ## Benchmark: the image's size and each controller's idle RSS in a container vs from the virtualenv
	$(PY) -m bench.image

.PHONY: bench-combined
bench-combined: venv fixture ## Benchmark: idle RSS of the four controllers as four processes vs one combined process
	$(PY) -m bench.combined

.PHONY: bench
bench: bench-uso bench-apf bench-pace bench-tainter bench-agreement bench-image bench-combined ## Every benchmark, then bench/README.md: one table, figures next to anchors
	$(PY) -m bench.report
