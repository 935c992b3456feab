#!/usr/bin/env bash
# Builds the envtest control-plane binaries (kube-apiserver, etcd, kubectl)
# from the Go modules pinned in hack/envtest/go.mod, into
#
#     $LOCALBIN/k8s/<kube-version>-<goos>-<goarch>/
#
# (the same layout setup-envtest uses), usable as KUBEBUILDER_ASSETS or as
# envtest.Environment.BinaryAssetsDirectory. Nothing is downloaded except Go
# modules through the module proxy (or the local module cache).
#
# The Kubernetes version follows the root go.mod: k8s.io/api v0.X.Y means
# Kubernetes v1.X.Y. hack/envtest/go.mod must pin the same minor; etcd is
# pinned there to the version Kubernetes itself requires.
#
# Usage:
#   hack/build-envtest.sh              build if needed; print the assets dir (last stdout line)
#   hack/build-envtest.sh --print-dir  print the assets dir only (no build, no checks)
#   hack/build-envtest.sh --check      only verify hack/envtest matches the root go.mod
#   hack/build-envtest.sh --update     re-pin hack/envtest to the root go.mod's Kubernetes
#                                      version (runs go mod tidy in hack/envtest only)
#   hack/build-envtest.sh --force      rebuild even if the cached binaries are up to date
#
# Environment:
#   LOCALBIN        output root (default: <repo>/bin)
#   ENVTEST_KUBECTL 1 (default) also builds kubectl; 0 skips it (envtest does not need it)
#   ENVTEST_STRICT  1 makes a patch-level mismatch with the root go.mod an error
#                   (by default it is only a warning)
#
# All progress messages go to stderr; stdout carries only the assets dir.
set -euo pipefail

PROG="build-envtest"
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD_DIR="$REPO_ROOT/hack/envtest"
ROOT_GOMOD="$REPO_ROOT/go.mod"
ENVTEST_GOMOD="$MOD_DIR/go.mod"
LOCALBIN="${LOCALBIN:-$REPO_ROOT/bin}"
ENVTEST_KUBECTL="${ENVTEST_KUBECTL:-1}"
ENVTEST_STRICT="${ENVTEST_STRICT:-0}"

# A go.work anywhere above must not pull hack/envtest into a workspace.
export GOWORK=off

MODE=build
FORCE=0
while [[ $# -gt 0 ]]; do
	case "$1" in
	--print-dir) MODE=print-dir ;;
	--check) MODE=check ;;
	--update) MODE=update ;;
	--force) FORCE=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^#/{s/^# \{0,1\}//;p}}' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

command -v go >/dev/null 2>&1 || die "the go command is not on PATH"
[[ -f "$ROOT_GOMOD" ]] || die "root go.mod not found at $ROOT_GOMOD"
[[ -f "$ENVTEST_GOMOD" ]] || die "$ENVTEST_GOMOD not found"

# gomod_require FILE MODULE: the version a go.mod requires MODULE at
# (single-line and block form), or nothing.
gomod_require() {
	awk -v m="$2" '
		{ sub(/\/\/.*/, "") }
		$1 == "require" && $2 == "(" { inblock = 1; next }
		inblock && $1 == ")" { inblock = 0; next }
		$1 == "require" && $2 == m { print $3; exit }
		inblock && $1 == m { print $2; exit }
	' "$1"
}

# gomod_replaces FILE: one "OLD NEWPATH NEWVERSION" line per replace directive
# (NEWVERSION is empty for directory replacements).
gomod_replaces() {
	awk '
		{ sub(/\/\/.*/, ""); single = 0 }
		$1 == "replace" && $2 == "(" { inblock = 1; next }
		inblock && $1 == ")" { inblock = 0; next }
		$1 == "replace" { single = 1; sub(/^[[:space:]]*replace[[:space:]]+/, "") }
		(inblock || single) && NF >= 3 {
			arrow = 0
			for (i = 1; i <= NF; i++) if ($i == "=>") arrow = i
			if (arrow == 0) next
			print $1, $(arrow + 1), (arrow + 2 <= NF ? $(arrow + 2) : "")
		}
	' "$1"
}

# staging_modules KUBERNETES_GOMOD: the k8s.io modules kubernetes replaces with
# ./staging directories; each needs "replace X => X v0.<minor>.<patch>" here.
staging_modules() {
	gomod_replaces "$1" | awk '$2 ~ /^\.\/staging\// { print $1 }' | sort -u
}

minor_of() { echo "$1" | cut -d. -f1,2; }

# --- versions -----------------------------------------------------------------
ROOT_API=""
for m in k8s.io/api k8s.io/client-go k8s.io/apimachinery; do
	ROOT_API="$(gomod_require "$ROOT_GOMOD" "$m")"
	[[ -n "$ROOT_API" ]] && break
done
[[ -n "$ROOT_API" ]] || die "the root go.mod requires none of k8s.io/api, k8s.io/client-go, k8s.io/apimachinery; cannot derive the Kubernetes version"
[[ "$ROOT_API" =~ ^v0\.[0-9]+\.[0-9]+ ]] || die "unexpected version '$ROOT_API' for k8s.io/api in the root go.mod (expected v0.X.Y)"
ROOT_KUBE="v1.${ROOT_API#v0.}"

PIN_KUBE="$(gomod_require "$ENVTEST_GOMOD" k8s.io/kubernetes)"
PIN_ETCD="$(gomod_require "$ENVTEST_GOMOD" go.etcd.io/etcd/server/v3)"

# update_pins: re-pin hack/envtest/go.mod to $ROOT_KUBE.
update_pins() {
	local kube="$ROOT_KUBE" staging_version="$ROOT_API" kube_gomod etcd args old _rest
	log "re-pinning hack/envtest to Kubernetes $kube (staging modules $staging_version)"
	kube_gomod="$( (cd "$MOD_DIR" && go mod download -json "k8s.io/kubernetes@$kube") |
		awk -F'"' '$2 == "GoMod" { print $4 } $2 == "Error" { print "go: " $4 > "/dev/stderr" }')" || true
	[[ -n "$kube_gomod" && -f "$kube_gomod" ]] || die "could not download k8s.io/kubernetes@$kube (is that version published?)"
	etcd="$(gomod_require "$kube_gomod" go.etcd.io/etcd/server/v3)"
	[[ -n "$etcd" ]] || etcd="$(gomod_require "$kube_gomod" go.etcd.io/etcd/client/v3)"
	[[ -n "$etcd" ]] || die "k8s.io/kubernetes@$kube requires no go.etcd.io/etcd module; pin etcd by hand: (cd hack/envtest && go get go.etcd.io/etcd/server/v3@vX.Y.Z)"
	args=(-require="k8s.io/kubernetes@$kube" -require="go.etcd.io/etcd/server/v3@$etcd")
	while read -r old _rest; do
		if [[ "$old" == k8s.io/* ]]; then args+=(-dropreplace="$old"); fi
	done < <(gomod_replaces "$ENVTEST_GOMOD")
	(cd "$MOD_DIR" && go mod edit "${args[@]}") || die "go mod edit failed in hack/envtest"
	# One replace block (go mod edit -replace would write one directive per line).
	{
		echo
		echo "replace ("
		while read -r old; do
			printf '\t%s => %s %s\n' "$old" "$old" "$staging_version"
		done < <(staging_modules "$kube_gomod")
		echo ")"
	} >>"$ENVTEST_GOMOD"
	(cd "$MOD_DIR" && go mod edit -fmt && go mod tidy) ||
		die "go mod tidy failed in hack/envtest; fix hack/envtest/go.mod by hand"
	log "hack/envtest now pins k8s.io/kubernetes $kube and go.etcd.io/etcd/server/v3 $etcd; commit hack/envtest/go.mod and hack/envtest/go.sum"
}

if [[ "$MODE" == update ]]; then
	update_pins
	PIN_KUBE="$(gomod_require "$ENVTEST_GOMOD" k8s.io/kubernetes)"
	PIN_ETCD="$(gomod_require "$ENVTEST_GOMOD" go.etcd.io/etcd/server/v3)"
	MODE=check
fi

[[ -n "$PIN_KUBE" ]] || die "hack/envtest/go.mod does not require k8s.io/kubernetes; run: hack/build-envtest.sh --update"
[[ -n "$PIN_ETCD" ]] || die "hack/envtest/go.mod does not require go.etcd.io/etcd/server/v3; run: hack/build-envtest.sh --update"
PIN_STAGING="v0.${PIN_KUBE#v1.}"

{ read -r GOOS && read -r GOARCH; } < <(go env GOOS GOARCH)
ASSETS_DIR="$LOCALBIN/k8s/${PIN_KUBE#v}-$GOOS-$GOARCH"

if [[ "$MODE" == print-dir ]]; then
	[[ "$(minor_of "$PIN_KUBE")" == "$(minor_of "$ROOT_KUBE")" ]] ||
		log "warning: hack/envtest pins Kubernetes $PIN_KUBE but the root go.mod is at $ROOT_KUBE; run: hack/build-envtest.sh --update"
	echo "$ASSETS_DIR"
	exit 0
fi

# --- consistency checks ---------------------------------------------------------
update_hint="Re-pin the envtest module with:

    hack/build-envtest.sh --update

(it sets k8s.io/kubernetes to the root's version, one 'replace k8s.io/X => k8s.io/X v0.X.Y'
per staging module listed in kubernetes' own go.mod, etcd to the version kubernetes requires,
and runs go mod tidy in hack/envtest only), then commit hack/envtest/go.mod and go.sum."

if [[ "$(minor_of "$PIN_KUBE")" != "$(minor_of "$ROOT_KUBE")" ]]; then
	die "hack/envtest pins k8s.io/kubernetes $PIN_KUBE, but the root go.mod requires $ROOT_API (Kubernetes $ROOT_KUBE): a different minor.
$update_hint"
fi
if [[ "$PIN_KUBE" != "$ROOT_KUBE" ]]; then
	if [[ "$ENVTEST_STRICT" == 1 ]]; then
		die "hack/envtest pins k8s.io/kubernetes $PIN_KUBE, but the root go.mod is at Kubernetes $ROOT_KUBE (ENVTEST_STRICT=1).
$update_hint"
	fi
	log "warning: hack/envtest pins Kubernetes $PIN_KUBE, the root go.mod is at $ROOT_KUBE (same minor; building $PIN_KUBE). To follow the root: hack/build-envtest.sh --update"
fi

declare -A replaced=()
while read -r old newpath newver; do
	[[ "$old" == k8s.io/* ]] || continue
	if [[ "$newpath" != "$old" || "$newver" != "$PIN_STAGING" ]]; then
		die "hack/envtest/go.mod replaces $old with '$newpath $newver'; expected '$old $PIN_STAGING' to match k8s.io/kubernetes $PIN_KUBE.
$update_hint"
	fi
	replaced[$old]=1
done < <(gomod_replaces "$ENVTEST_GOMOD")

KUBE_GOMOD="$(cd "$MOD_DIR" && go list -mod=readonly -m -f '{{.GoMod}}' k8s.io/kubernetes)" ||
	die "cannot resolve k8s.io/kubernetes in hack/envtest (module proxy reachable? go.sum complete?).
$update_hint"
missing=()
while read -r m; do
	if [[ -z "${replaced[$m]:-}" ]]; then missing+=("$m"); fi
done < <(staging_modules "$KUBE_GOMOD")
if [[ ${#missing[@]} -gt 0 ]]; then
	die "hack/envtest/go.mod lacks 'replace X => X $PIN_STAGING' for staging module(s): ${missing[*]}.
$update_hint"
fi

if [[ "$MODE" == check ]]; then
	log "ok: hack/envtest pins Kubernetes $PIN_KUBE (root: $ROOT_KUBE), etcd $PIN_ETCD, ${#replaced[@]} staging replaces"
	exit 0
fi

# --- build --------------------------------------------------------------------
STAMP_FILE="$ASSETS_DIR/.version"
STAMP="kube-apiserver=$PIN_KUBE etcd=$PIN_ETCD kubectl=$([[ "$ENVTEST_KUBECTL" == 1 ]] && echo "$PIN_KUBE" || echo none) $GOOS/$GOARCH"
BINARIES=(kube-apiserver etcd)
if [[ "$ENVTEST_KUBECTL" == 1 ]]; then BINARIES+=(kubectl); fi

up_to_date() {
	[[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP" ]] || return 1
	local b
	for b in "${BINARIES[@]}"; do [[ -x "$ASSETS_DIR/$b" ]] || return 1; done
}

mkdir -p "$LOCALBIN/k8s"
if [[ "$FORCE" == 0 ]] && up_to_date; then
	log "cached: $ASSETS_DIR ($STAMP)"
	echo "$ASSETS_DIR"
	exit 0
fi

# Serialise concurrent builds (e.g. parallel make jobs).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$LOCALBIN/k8s/.build.lock"
	flock 9
	if [[ "$FORCE" == 0 ]] && up_to_date; then
		log "cached (built by a concurrent run): $ASSETS_DIR"
		echo "$ASSETS_DIR"
		exit 0
	fi
fi

TMP_DIR="$(mktemp -d "$LOCALBIN/k8s/.build.XXXXXX")"
trap 'rm -rf "$TMP_DIR"' EXIT

kube_minor="${PIN_KUBE#v1.}"
kube_minor="${kube_minor%%.*}"
kube_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kube_ldflags+=" -X $p.gitVersion=$PIN_KUBE -X $p.gitMajor=1 -X $p.gitMinor=$kube_minor -X $p.gitTreeState=clean"
done

build() { # OUTPUT PACKAGE LDFLAGS
	local start=$SECONDS
	log "building $1 from $2 ..."
	(cd "$MOD_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$3" -o "$TMP_DIR/$1" "$2") ||
		die "building $1 failed (package $2, module hack/envtest)"
	log "built $1 in $((SECONDS - start))s"
}

total_start=$SECONDS
log "building envtest binaries: Kubernetes $PIN_KUBE, etcd $PIN_ETCD -> $ASSETS_DIR (first build takes several minutes)"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build etcd go.etcd.io/etcd/server/v3 "-s -w"
if [[ "$ENVTEST_KUBECTL" == 1 ]]; then build kubectl k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"; fi

mkdir -p "$ASSETS_DIR"
rm -f "$STAMP_FILE"
for b in "${BINARIES[@]}"; do mv -f "$TMP_DIR/$b" "$ASSETS_DIR/$b"; done
if [[ "$ENVTEST_KUBECTL" != 1 ]]; then rm -f "$ASSETS_DIR/kubectl"; fi
echo "$STAMP" >"$STAMP_FILE"
log "done in $((SECONDS - total_start))s: $ASSETS_DIR"
echo "$ASSETS_DIR"
