# Sourced by hack/ensure-*.sh: apt_install NAME PACKAGE installs a Debian
# package as root (or through sudo) and sets the array sudo to the prefix
# the caller's own privileged commands need. NAME prefixes messages.
# Refreshes the package lists first only if the package is unknown, and
# once more if the install fails on stale lists.

apt_install() {
	local name=$1 pkg=$2
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "$name: apt-get unavailable: install $pkg yourself" >&2
		return 1
	fi
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || {
			echo "$name: need root (or sudo) to apt-get install $pkg" >&2
			return 1
		}
		sudo=(sudo)
	fi
	echo "$name: installing $pkg (apt-get install $pkg)..." >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-cache show "$pkg" >/dev/null 2>&1; then
		"${sudo[@]}" apt-get update -qq
	fi
	if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null; then
		"${sudo[@]}" apt-get update -qq
		"${sudo[@]}" apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
	fi
}
