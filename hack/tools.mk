# Pinned developer tools and envtest binaries, built from Go modules into
# $(LOCALBIN) and cached there (see hack/build-tool.sh, hack/build-envtest.sh).
#
# Include from the root Makefile:
#
#     include hack/tools.mk
#
#     manifests: $(CONTROLLER_GEN)
#         $(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
#     lint: $(GOLANGCI_LINT)
#         $(GOLANGCI_LINT) run
#     test: envtest
#         KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test ./...
#
# Versions: hack/tools/go.mod (controller-gen, golangci-lint), hack/helm/go.mod
# (helm), hack/envtest/go.mod (kube-apiserver, kubectl, etcd; its Kubernetes
# minor must match k8s.io/api in the root go.mod: hack/build-envtest.sh --update).

# Must stay above any other include: the directory holding this file.
TOOLS_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

LOCALBIN ?= $(CURDIR)/bin

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
HELM ?= $(LOCALBIN)/helm

# Directory for KUBEBUILDER_ASSETS / envtest.Environment.BinaryAssetsDirectory.
# Only computed (once, on first use), not built: depend on `envtest` to build it.
ENVTEST_ASSETS ?= $(eval ENVTEST_ASSETS := $(shell LOCALBIN='$(LOCALBIN)' $(TOOLS_MK_DIR)/build-envtest.sh --print-dir))$(ENVTEST_ASSETS)

# The scripts keep a version stamp next to each binary and skip the build when
# it matches the pinned version; the go.mod prerequisites only make make ask.
$(CONTROLLER_GEN): $(TOOLS_MK_DIR)/tools/go.mod
	@LOCALBIN='$(LOCALBIN)' $(TOOLS_MK_DIR)/build-tool.sh controller-gen >/dev/null

$(GOLANGCI_LINT): $(TOOLS_MK_DIR)/tools/go.mod
	@LOCALBIN='$(LOCALBIN)' $(TOOLS_MK_DIR)/build-tool.sh golangci-lint >/dev/null

$(HELM): $(TOOLS_MK_DIR)/helm/go.mod
	@LOCALBIN='$(LOCALBIN)' $(TOOLS_MK_DIR)/build-tool.sh helm >/dev/null

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(HELM) ## Build the pinned developer tools into bin/ (LOCALBIN).

.PHONY: envtest
envtest: ## Build (or reuse) kube-apiserver, etcd and kubectl for envtest; prints the KUBEBUILDER_ASSETS dir.
	@LOCALBIN='$(LOCALBIN)' $(TOOLS_MK_DIR)/build-envtest.sh

.PHONY: envtest-check
envtest-check: ## Verify hack/envtest pins the Kubernetes minor of the root go.mod (no build).
	@LOCALBIN='$(LOCALBIN)' $(TOOLS_MK_DIR)/build-envtest.sh --check
