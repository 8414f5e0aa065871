# Helpers for the scripts in this folder; source it, do not run it.

# Installs Debian packages when a check fails: `ensure "check command" package...`.
# Adds a foreign architecture first when a package name carries one (`:arm64`).
ensure() {
    local check=$1
    shift
    if eval "$check" >/dev/null 2>&1; then
        return 0
    fi
    echo "--> installing $*"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    local arch
    for arch in $(printf '%s\n' "$@" | sed -n 's/.*:\([a-z0-9]*\)$/\1/p' | sort -u); do
        dpkg --print-foreign-architectures | grep -qx "$arch" || "${sudo[@]}" dpkg --add-architecture "$arch"
    done
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
    eval "$check" || { echo "still missing after installing $*: $check" >&2; exit 1; }
}

# Prints the test executables that `cargo test --no-run "$@"` builds, one per line.
test_executables() {
    cargo test --no-run --message-format=json "$@" 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
'
}

# Runs a command, then prints how long it took: `timed label command...`.
timed() {
    local label=$1
    shift
    local start=$SECONDS
    "$@"
    echo "--> $label: $((SECONDS - start)) s"
}
