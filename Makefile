# persistence-operator: `make dev` runs it, `make test` tests it.
#
# Every tool is pinned and built from Go modules into ./bin (hack/tools.mk);
# nothing is downloaded but Go modules, npm packages and Debian packages.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

include hack/tools.mk

IMG ?= persistence-operator:dev
GO ?= go
# Extra flags for go test, e.g. GOTESTFLAGS=-v or GOTESTFLAGS='-run Rollout'.
GOTESTFLAGS ?=
# Flags for hack/bench-gateway.sh, e.g. BENCH_GATEWAY_ARGS='-docs 50 -rate 0'.
BENCH_GATEWAY_ARGS ?=
# How long each fuzz target runs in `make test` (fuzz-smoke).
FUZZTIME ?= 3s
# package:target for every fuzz target (the decoders, and the ledger's
# canonical encoding against encoding/json, and the forwarding proxy's
# frame tap).
FUZZ_TARGETS := $(addprefix ./internal/yjs/:,FuzzDecodeUpdate FuzzApplyUpdate FuzzMergeUpdates FuzzDecodeStateVector FuzzDecodeDeleteSet FuzzDecodeAny FuzzDecodeSnapshot) \
	./internal/yprotocol/:FuzzDecode ./pkg/localfirst/:FuzzOpen ./internal/ledger/:FuzzCanonical ./internal/gateway/:FuzzFrameTap
CHART_CRDS := charts/persistence-operator/crds

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC, and copy the CRD into the Helm chart.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
	rm -f $(CHART_CRDS)/*.yaml
	cp config/crd/bases/*.yaml $(CHART_CRDS)/

.PHONY: fmt
fmt: ## gofmt the code.
	$(GO) fmt ./...

.PHONY: vet
vet: ## go vet the code.
	$(GO) vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (pinned v2).
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate manifests ## Regenerate everything and fail on any difference from what is committed.
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "not gofmt-ed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@if ! git diff --quiet -- api config charts; then \
		echo "generated files differ from the committed ones: run make generate manifests and commit"; \
		git --no-pager diff --stat -- api config charts; exit 1; fi
	@if [ -n "$$(git ls-files --others --exclude-standard -- api config charts)" ]; then \
		echo "generated files are not committed:"; git ls-files --others --exclude-standard -- api config charts; exit 1; fi

.PHONY: deps
deps: ## Install what the tests need on a fresh machine (PostgreSQL, promtool, the npm packages).
	hack/ensure-postgres.sh
	hack/ensure-prometheus.sh
	npm ci --prefix test/yjs --no-audit --no-fund --loglevel=error

.PHONY: test
test: deps verify vet lint envtest $(HELM) ## Run the whole suite: verify, vet, lint, unit, envtest, PostgreSQL, yjs, chart, fuzz smoke.
	HELM="$(HELM)" KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) test $(GOTESTFLAGS) ./...
	$(MAKE) --no-print-directory fuzz-smoke

.PHONY: fuzz-smoke
fuzz-smoke: ## Run every fuzz target briefly (FUZZTIME each).
	@for pt in $(FUZZ_TARGETS); do \
		pkg=$${pt%%:*}; t=$${pt##*:}; \
		log=$$(mktemp); \
		if ! $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1; then \
			if grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input' $$log; then \
				echo "fuzz-smoke: $$t: the fuzzer's workers did not stop in time (a known go test -fuzz hiccup under load); running it again"; \
				$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1 || { cat $$log; echo "fuzz target $$t in $$pkg failed"; exit 1; }; \
			else cat $$log; echo "fuzz target $$t in $$pkg failed"; exit 1; fi; \
		fi; rm -f $$log; \
	done
	@echo "fuzz-smoke: $(words $(FUZZ_TARGETS)) targets ran $(FUZZTIME) each without a failure"

##@ Benchmarks

.PHONY: bench-engine
bench-engine: deps ## Yjs engine against yjs in Node on the B4 trace, same run.
	hack/bench-engine.sh

.PHONY: bench-store
bench-store: deps ## Store saves/s, p50/p99 and CPU per save at 1-256 writers (empty and 8 KiB documents) beside pgbench (single rows; each kind of save's own rows, one transaction per save; document-sized row rewrites), same PostgreSQL, same run.
	hack/bench-store.sh

.PHONY: bench-integrity
bench-integrity: deps ## Backfill and verification docs/s for 10k and 100k documents beside a plain SELECT scan, same run.
	hack/bench-integrity.sh

.PHONY: bench-gateway
bench-gateway: deps ## Sync gateway (durable) against Hocuspocus (in memory), real yjs clients: updates/s, p50/p99, memory/doc, same run.
	hack/bench-gateway.sh $(BENCH_GATEWAY_ARGS)

##@ Build and run

.PHONY: build
build: ## Build every binary into bin/.
	$(GO) build -o bin/ ./cmd/...

.PHONY: run
run: manifests ## Run the manager against the cluster of the current kubeconfig.
	$(GO) run ./cmd/manager --health-probe-bind-address=:18081 --metrics-bind-address=:18080

.PHONY: dev
dev: deps envtest build ## Run everything locally in the foreground; writes bin/dev/{kubeconfig,database-url,gateway-url,token-key}.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" bin/devenv --crds config/crd/bases --state bin/dev --bin bin $(if $(KEEP_DATA),--keep-data)

.PHONY: helm
helm: $(HELM) ## Build the pinned helm into bin/.

.PHONY: docker-build
docker-build: ## Build the image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubeconfig.
	kubectl apply --server-side -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator with kustomize into the current cluster.
	kubectl kustomize config/default | sed 's|image: persistence-operator:dev|image: $(IMG)|' | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator from the current cluster.
	kubectl kustomize config/default | kubectl delete --ignore-not-found -f -
