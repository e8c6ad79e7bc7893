#!/usr/bin/env bash
# Install what authnode's development and test suite need on a fresh Debian machine.
# Idempotent: each step checks first and only does work that is missing. Run as root
# (or with sudo available) when Debian packages are missing.
#
#   Debian packages: redis-server redis-tools postgresql wrk systemd iproute2
#                    chromium chromium-driver haproxy (nodejs npm, if node is missing)
#   FerretDB v1:     $(go env GOPATH)/bin/ferretdb, built from the Go module proxy
#   Helm v3:         $(go env GOPATH)/bin/helm, built the same way (the chart's CI checks)
#   Python:          ./.venv (python3.11) with `pip install -e '.[test,bench]'`
#   Bench peer:      ./bench/.peer-venv with bench/peer-requirements.txt (fastapi-users)
#   Node packages:   tests/services/oidc_node/node_modules (oidc-provider, pinned in its
#                    package.json and package-lock.json): the OpenID provider of the tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FERRETDB_VERSION="v1.24.2"
HELM_VERSION="v3.22.0"
# The Kubernetes version helm assumes without --kube-version: that of its client-go
# (v0.37 for helm v3.22), as helm's own Makefile sets it.
HELM_K8S_MINOR="37"
PYTHON="${PYTHON:-python3.11}"
VENV="$ROOT/.venv"

say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

# ---------------------------------------------------------------- Debian packages
pkg_installed() {
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

missing=()
for pkg in redis-server redis-tools postgresql wrk iproute2 chromium chromium-driver haproxy; do
    pkg_installed "$pkg" || missing+=("$pkg")
done
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# Node.js runs the tests' OpenID provider; a machine that brings its own keeps it.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || {
    [[ " ${missing[*]} " == *" postgresql "* ]] || missing+=(postgresql)
}
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=600 -qq)
    as_root apt-get "${apt_opts[@]}" update
    as_root apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages: all present"
fi

pg_bin=""
for dir in /usr/lib/postgresql/*/bin; do  # glob order: take the highest version
    [ -x "$dir/postgres" ] || continue
    if [ -z "$pg_bin" ] || [ "$(basename "$(dirname "$dir")")" -gt "$(basename "$(dirname "$pg_bin")")" ]; then
        pg_bin="$dir"
    fi
done
[ -x "$pg_bin/postgres" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
say "PostgreSQL: $pg_bin"

# ---------------------------------------------------------------- FerretDB
if [ -x /usr/local/go/bin/go ]; then
    GO=/usr/local/go/bin/go
else
    # FerretDB needs Go >= 1.24 (Debian's golang-go is too old): the machine brings it.
    GO="$(command -v go)" || die "go not found (expected /usr/local/go/bin/go)"
fi
gobin="$("$GO" env GOBIN)"
[ -n "$gobin" ] || gobin="$("$GO" env GOPATH | cut -d: -f1)/bin"
ferretdb="$gobin/ferretdb"

ferretdb_works() {
    [ -x "$ferretdb" ] && "$ferretdb" --version 2>/dev/null | grep -q "version: $FERRETDB_VERSION"
}

if ferretdb_works; then
    say "FerretDB: $ferretdb ($FERRETDB_VERSION)"
else
    # `go install github.com/FerretDB/FerretDB/cmd/ferretdb@VERSION` builds a binary that
    # panics at start: the module zip lacks the generated build/version/version.txt. So
    # copy the module source, add that file, and build it there.
    say "FerretDB: building $FERRETDB_VERSION with $("$GO" version | cut -d' ' -f3) (takes a few minutes)"
    src_dir="$("$GO" mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -d "$src_dir" ] || die "go mod download of FerretDB failed"
    build_dir="$(mktemp -d)"
    trap 'rm -rf "$build_dir"' EXIT
    cp -r "$src_dir/." "$build_dir/"
    chmod -R u+w "$build_dir"
    echo "$FERRETDB_VERSION" >"$build_dir/build/version/version.txt"
    mkdir -p "$gobin"
    (cd "$build_dir" && "$GO" build -trimpath -o "$ferretdb.tmp" ./cmd/ferretdb)
    mv -f "$ferretdb.tmp" "$ferretdb"
    rm -rf "$build_dir"
    trap - EXIT
    ferretdb_works || die "built $ferretdb but it does not run"
    say "FerretDB: built $ferretdb"
fi

# ---------------------------------------------------------------- Helm
helm="$gobin/helm"
if [ -x "$helm" ] && "$helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
    say "Helm: $helm ($HELM_VERSION)"
else
    # `go install` skips the Makefile's -X flags: without them the binary calls itself
    # "v3.22" and assumes Kubernetes 1.20. Set them as the Makefile does.
    say "Helm: building $HELM_VERSION (takes a few minutes the first time)"
    ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
    done
    (cd / && GOBIN="$gobin" "$GO" install -trimpath -ldflags "$ldflags" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
    "$helm" version --short | grep -q "^$HELM_VERSION" || die "built $helm but it does not run"
    say "Helm: built $helm"
fi

# ---------------------------------------------------------------- Python virtualenv
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "creating $VENV with $("$PYTHON" --version)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp_file="$VENV/.installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have="$(cat "$stamp_file" 2>/dev/null || true)"
if [ "$want" = "$have" ]; then
    say "Python packages: up to date (pyproject.toml unchanged)"
else
    say "Python packages: pip install -e '.[test,bench]'"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
    echo "$want" >"$stamp_file"
fi

# ---------------------------------------------------------------- the bench's peer
# fastapi-users (bench/peer_fastapi_users.py) in a virtualenv of its own: it pins
# email-validator<2.4, which authnode's .venv cannot take.
PEER_VENV="$ROOT/bench/.peer-venv"
peer_want="$(sha256sum bench/peer-requirements.txt | cut -d' ' -f1)"
peer_have="$(cat "$PEER_VENV/.installed" 2>/dev/null || true)"
if [ "$peer_want" = "$peer_have" ] && "$PEER_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "bench peer: up to date (bench/peer-requirements.txt unchanged)"
else
    say "bench peer: $PEER_VENV with bench/peer-requirements.txt"
    rm -rf "$PEER_VENV"
    "$PYTHON" -m venv "$PEER_VENV"
    "$PEER_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r bench/peer-requirements.txt
    echo "$peer_want" >"$PEER_VENV/.installed"
fi

# ---------------------------------------------------------------- Node (test OIDC provider)
oidc_dir="$ROOT/tests/services/oidc_node"
command -v npm >/dev/null 2>&1 || die "npm not found (the tests' OpenID provider needs Node.js)"
oidc_stamp="$oidc_dir/node_modules/.installed"
oidc_want="$(cat "$oidc_dir/package.json" "$oidc_dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ "$oidc_want" = "$(cat "$oidc_stamp" 2>/dev/null || true)" ]; then
    say "Node packages: up to date (tests/services/oidc_node)"
else
    say "Node packages: npm ci in tests/services/oidc_node"
    (cd "$oidc_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$oidc_want" >"$oidc_stamp"
fi

say "done"
