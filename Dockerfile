# syntax=docker/dockerfile:1
# One image for the whole project: the operator (manager), the sync gateway,
# the syncer sidecar and the yawpctl CLI. The binary paths below are the ones
# in internal/contract (Binary*): the controller starts the gateway pods from
# this same image with those paths as their commands.

# Build the binaries.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
# Download the modules first, so source edits do not invalidate that layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

# The Go sources (.dockerignore keeps everything else out of the context).
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/

# Static, reproducible binaries: no cgo, no local paths, no symbol tables.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/ \
        ./cmd/manager ./cmd/gateway ./cmd/syncer ./cmd/yawpctl

# Run them from a distroless base: no shell, no package manager, non-root.
FROM gcr.io/distroless/static:nonroot
COPY --from=builder /out/manager /usr/local/bin/manager
COPY --from=builder /out/gateway /usr/local/bin/gateway
COPY --from=builder /out/syncer  /usr/local/bin/syncer
COPY --from=builder /out/yawpctl /usr/local/bin/yawpctl
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/manager"]
