# Phlox — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV ?= .venv
MOTO_VERSION ?= 5.2.5
ARGS ?=

.PHONY: conformance help run test e2e e2e-cluster bench bench-long-range bench-symbolize fuzz lint fmt fix verify crds mixin clean k8s-validate browser-test

help: ## Show the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-13s %s\n", $$1, $$2}'

run: ## Run Phlox: every component in one process, data in ./data, APIs on :4040 (ARGS=... for flags)
	$(CARGO) run --release --bin phlox -- $(ARGS)

test: ## Run all tests (every stage runs; failures listed at the end): unit, integration, S3 conformance on a local moto server, e2e on the real binary (with Prometheus and a JDK), k8s-validate, the browser test, the repo-paths guard
	VENV=$(VENV) MOTO_VERSION=$(MOTO_VERSION) CARGO=$(CARGO) scripts/test.sh

browser-test: ## The web UI in headless Chromium (installed if missing), screenshots in target/ui-test/
	$(CARGO) build --bin phlox
	scripts/browser-test.sh

k8s-validate: ## Validate the operator's rendered objects, config/ and the Helm chart against the Kubernetes 1.33 schemas
	scripts/k8s-validate.sh

e2e: ## Run only the end-to-end tests (real phlox processes)
	$(CARGO) build --bin phlox
	scripts/ensure-test-tools.sh
	PHLOX_TEST_REQUIRE_PROMETHEUS=1 VENV=$(VENV) MOTO_VERSION=$(MOTO_VERSION) scripts/with-moto.sh scripts/cargo-test.sh -p phlox-e2e

e2e-cluster: ## The cluster in a box: the operator's controller loop on an in-memory API, every pod a real phlox process in its own network namespace, blocks in a local moto S3 (root, iproute2, python3)
	@command -v ip >/dev/null || { echo "make e2e-cluster needs iproute2 (apt-get install iproute2)"; exit 1; }
	@[ "$$(id -u)" = 0 ] || { echo "make e2e-cluster needs root (network namespaces, bind mounts)"; exit 1; }
	$(CARGO) build --bin phlox
	VENV=$(VENV) MOTO_VERSION=$(MOTO_VERSION) scripts/with-moto.sh $(CARGO) test -p phlox-e2e --test cluster_in_a_box -- --nocapture

conformance: ## The compatibility corpus (third-party profiles beside the clone, or PEER_FIXTURES=DIR) against Pyroscope's answers
	$(CARGO) build --bin phlox --bin conformance
	scripts/ensure-test-tools.sh
	scripts/conformance.sh

bench: ## Measure the write path (throughput, bytes per sample, dedup, flush latency)
	$(CARGO) bench -p phlox-server --bench ingest --bench http_ingest --bench formats_ingest --bench distributed --bench saturation --bench metastore
	$(CARGO) bench -p phlox-query --bench query
	$(CARGO) bench -p phlox-autoscaler --bench traces

bench-long-range: ## Flame graphs over 1 h .. 30 d from rollups and from raw rows (~3 GB of disk, ~10 min)
	$(CARGO) bench -p phlox-query --bench long_range

bench-symbolize: ## A flame graph of 10 000 native addresses symbolized from an uploaded debug file, cold and warm (gcc)
	$(CARGO) bench -p phlox-query --bench symbolize

fuzz: ## Mutation-fuzz every decoder (FUZZ_SECONDS per decoder, default 30; FUZZ_SEED, default 1): mutants/s printed, the first panic or over-budget allocation fails
	$(CARGO) build -p phlox-e2e --bin fuzz
	target/debug/fuzz --seconds $${FUZZ_SECONDS:-30} --seed $${FUZZ_SEED:-1}

mixin: ## Regenerate the dashboards (config/mixin and the chart's copy) from operator/src/mixin.rs; copy the alerts into the chart
	$(CARGO) run -q -p phlox-operator -- mixin --out config/mixin
	$(CARGO) run -q -p phlox-operator -- mixin --out charts/phlox-operator/mixin

crds: ## Regenerate the CRD YAML (crds/ and the chart's crds/) from the Rust types
	$(CARGO) run -q -p phlox-operator -- crd > crds/phlox.dev_pyroscopeclusters.yaml
	cp crds/phlox.dev_pyroscopeclusters.yaml charts/phlox-operator/crds/

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

fix: ## Apply clippy's and rustfmt's fixes
	$(CARGO) clippy --workspace --all-targets --fix --allow-dirty --allow-staged
	$(CARGO) fmt --all

verify: lint test ## Everything CI checks

clean: ## Remove build output and the local data directory
	$(CARGO) clean
	rm -rf data $(VENV) .venv-k8s .venv-helm
