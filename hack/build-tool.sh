#!/usr/bin/env bash
# Builds pinned developer tools from their own Go modules into $LOCALBIN:
#
#   controller-gen  sigs.k8s.io/controller-tools               (hack/tools/go.mod)
#   golangci-lint   github.com/golangci/golangci-lint/v2       (hack/tools/go.mod)
#   helm            helm.sh/helm/v3                            (hack/helm/go.mod)
#
# A tool is rebuilt only when $LOCALBIN/NAME is missing or $LOCALBIN/.NAME.version
# differs from the version pinned in its module's go.mod.
#
# Usage:
#   hack/build-tool.sh [--force] NAME...   build NAME(s); prints each binary path on stdout
#   hack/build-tool.sh --version NAME      print the pinned version of NAME
#
# To bump a tool:  cd hack/tools && go get -tool MODULE/cmd/NAME@vX.Y.Z && go mod tidy
# (hack/helm for helm); the next run of this script rebuilds it. If tidy in
# hack/tools fails with "ambiguous import ... google.golang.org/genproto" (an old
# genproto pulled in by golangci-lint's viper), run
# "go get google.golang.org/genproto@latest" there first, then tidy again.
#
# Environment:
#   LOCALBIN  output directory (default: <repo>/bin)
set -euo pipefail

PROG="build-tool"
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCALBIN="${LOCALBIN:-$REPO_ROOT/bin}"

# A go.work anywhere above must not pull the tool modules into a workspace.
export GOWORK=off

# gomod_require FILE MODULE: the version a go.mod requires MODULE at, or nothing.
gomod_require() {
	awk -v m="$2" '
		{ sub(/\/\/.*/, "") }
		$1 == "require" && $2 == "(" { inblock = 1; next }
		inblock && $1 == ")" { inblock = 0; next }
		$1 == "require" && $2 == m { print $3; exit }
		inblock && $1 == m { print $2; exit }
	' "$1"
}

# tool_info NAME: sets MOD_DIR, MODULE, PKG.
tool_info() {
	case "$1" in
	controller-gen)
		MOD_DIR="$REPO_ROOT/hack/tools"
		MODULE=sigs.k8s.io/controller-tools
		PKG=sigs.k8s.io/controller-tools/cmd/controller-gen
		;;
	golangci-lint)
		MOD_DIR="$REPO_ROOT/hack/tools"
		MODULE=github.com/golangci/golangci-lint/v2
		PKG=github.com/golangci/golangci-lint/v2/cmd/golangci-lint
		;;
	helm)
		MOD_DIR="$REPO_ROOT/hack/helm"
		MODULE=helm.sh/helm/v3
		PKG=helm.sh/helm/v3/cmd/helm
		;;
	*) die "unknown tool '$1' (known: controller-gen, golangci-lint, helm)" ;;
	esac
	[[ -f "$MOD_DIR/go.mod" ]] || die "$MOD_DIR/go.mod not found"
	VERSION="$(gomod_require "$MOD_DIR/go.mod" "$MODULE")"
	[[ -n "$VERSION" ]] || die "${MOD_DIR#"$REPO_ROOT"/}/go.mod does not require $MODULE; run: (cd ${MOD_DIR#"$REPO_ROOT"/} && go get -tool $PKG@vX.Y.Z && go mod tidy)"
}

# ldflags NAME: version stamping, as the projects' own release builds do.
ldflags() {
	local flags="-s -w" cg k8s_minor
	case "$1" in
	controller-gen)
		flags+=" -X sigs.k8s.io/controller-tools/pkg/version.version=$VERSION"
		;;
	golangci-lint)
		flags+=" -X main.version=${VERSION#v} -X main.commit=$MODULE@$VERSION -X main.date=unknown"
		;;
	helm)
		flags+=" -X helm.sh/helm/v3/internal/version.version=$VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
		# helm's default .Capabilities.KubeVersion follows the client-go it is built with.
		cg="$(gomod_require "$MOD_DIR/go.mod" k8s.io/client-go)"
		if [[ "$cg" =~ ^v0\.([0-9]+)\. ]]; then
			k8s_minor="${BASH_REMATCH[1]}"
			for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
				flags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
			done
		fi
		;;
	esac
	echo "$flags"
}

build_one() {
	local name="$1" force="$2" bin stamp_file start
	tool_info "$name"
	bin="$LOCALBIN/$name"
	stamp_file="$LOCALBIN/.$name.version"
	if [[ "$force" == 0 && -x "$bin" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$VERSION" ]]; then
		log "cached: $name $VERSION"
		# Keep make's file targets (which depend on the module's go.mod) satisfied.
		touch "$bin"
		echo "$bin"
		return 0
	fi
	mkdir -p "$LOCALBIN"
	start=$SECONDS
	log "building $name $VERSION from ${MOD_DIR#"$REPO_ROOT"/} ..."
	rm -f "$stamp_file"
	(cd "$MOD_DIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$(ldflags "$name")" -o "$bin.tmp.$$" "$PKG") || {
		rm -f "$bin.tmp.$$"
		die "building $name failed (package $PKG, module ${MOD_DIR#"$REPO_ROOT"/})"
	}
	mv -f "$bin.tmp.$$" "$bin"
	echo "$VERSION" >"$stamp_file"
	log "built $name $VERSION in $((SECONDS - start))s"
	echo "$bin"
}

FORCE=0
PRINT_VERSION=0
NAMES=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--force) FORCE=1 ;;
	--version) PRINT_VERSION=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^#/{s/^# \{0,1\}//;p}}' "${BASH_SOURCE[0]}"
		exit 0
		;;
	-*) die "unknown flag '$1' (see --help)" ;;
	*) NAMES+=("$1") ;;
	esac
	shift
done
[[ ${#NAMES[@]} -gt 0 ]] || die "usage: hack/build-tool.sh [--force] NAME... (controller-gen, golangci-lint, helm)"
command -v go >/dev/null 2>&1 || die "the go command is not on PATH"

for name in "${NAMES[@]}"; do
	if [[ "$PRINT_VERSION" == 1 ]]; then
		tool_info "$name"
		echo "$VERSION"
	else
		build_one "$name" "$FORCE"
	fi
done
