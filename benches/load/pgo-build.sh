#!/usr/bin/env bash
# Builds apps/bench-proxy with profile-guided optimisation into target/pgo/bench-proxy:
#
#   1. an instrumented build (`-Cprofile-generate`, the `dist` profile),
#   2. a training run: harness.py --train sends every harness scenario's load (HTTP/1.1
#      over UDS and TCP upstreams, 12 B and 16 KiB bodies, h2c) through it, against the
#      same nginx origin, and stops it so that it writes its profile,
#   3. llvm-profdata merges the raw profile,
#   4. the final build (`-Cprofile-use`), in its own target dir so the plain `dist` build
#      is left as it is.
#
# The same four steps apply to any app of the workspace (see docs/benchmarks.md); only
# the training load is the bench's own.
#
#   benches/load/pgo-build.sh [--no-install] [--duration S] [--help]
#
# llvm-profdata must read the raw profiles of rustc's own LLVM. The rustup component
# llvm-tools carries the matching one; without it, Debian's newest llvm-N is used (llvm-19
# reads the raw profiles of rustc 1.95's LLVM 22, whose format is unchanged), installed
# when missing. A mismatch is reported by the merge step, never ignored.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
INSTALL=1
DURATION=4
while [ $# -gt 0 ]; do
    case "$1" in
        --no-install) INSTALL=0 ;;
        --duration)
            if [ $# -lt 2 ]; then echo "--duration needs a number of seconds" >&2; exit 2; fi
            DURATION="$2"; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (--help lists them)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '[pgo] %s\n' "$*" >&2; }
# shellcheck source=apt.sh
source "$HERE/apt.sh"

HOST="$(rustc -vV | sed -n 's/^host: //p')"
# Linked as `cargo ship` links the shipped binary (see .cargo/config.toml), which RUSTFLAGS
# would otherwise override.
STATIC=""
case "$HOST" in *-linux-gnu*) STATIC="-Ctarget-feature=+crt-static" ;; esac
find_profdata() {
    local sysroot candidate version
    sysroot="$(rustc --print sysroot)"
    candidate="$sysroot/lib/rustlib/$HOST/bin/llvm-profdata"
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    for version in $(seq 40 -1 19); do
        candidate="/usr/lib/llvm-$version/bin/llvm-profdata"
        if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
    return 1
}
PROFDATA="$(find_profdata || true)"
if [ -z "$PROFDATA" ] && [ "$INSTALL" = 1 ]; then
    say "installing llvm-19 for llvm-profdata"
    apt_install llvm-19
    PROFDATA="$(find_profdata || true)"
fi
if [ -z "$PROFDATA" ]; then
    say "no llvm-profdata of LLVM 19 or newer: apt-get install -y llvm-19 (or rustup component add llvm-tools)"
    exit 1
fi
say "llvm-profdata: $PROFDATA"

WORK="$ROOT/target/pgo"
RAW="$WORK/raw"
INSTRUMENTED="$WORK/generate/$HOST/dist/bench-proxy"

# `--target` keeps RUSTFLAGS off build scripts and proc macros (the DSL's macro among
# them), which run at build time and would otherwise write profiles of their own.
say "instrumented build"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$RAW $STATIC" CARGO_TARGET_DIR="$WORK/generate" \
    cargo build --profile dist -p bench-proxy --target "$HOST")

# cargo rebuilds the instrumented binary only when the code changed; a final binary newer
# than it was trained on the same code.
if [ -x "$WORK/bench-proxy" ] && [ "$WORK/bench-proxy" -nt "$INSTRUMENTED" ]; then
    say "up to date: $WORK/bench-proxy (rm -rf $WORK to rebuild)"
    exit 0
fi
rm -rf "$RAW" "$WORK"/*.profdata "$WORK/bench-proxy"
mkdir -p "$RAW"

say "training: every harness scenario for ${DURATION}s"
python3 "$HERE/harness.py" --train --duration "$DURATION" --bin-ours "$INSTRUMENTED"

"$PROFDATA" merge -o "$WORK/merged.profdata" "$RAW"
# Named by its content: cargo fingerprints the flags, not the file a flag names, so a new
# profile must be a new flag for every crate (hyper and h2 included) to be rebuilt with it.
PROFILE="$WORK/bench-proxy-$(sha256sum "$WORK/merged.profdata" | cut -c1-16).profdata"
mv "$WORK/merged.profdata" "$PROFILE"

say "optimised build"
rm -rf "$WORK/use"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$PROFILE $STATIC" CARGO_TARGET_DIR="$WORK/use" \
    cargo build --profile dist -p bench-proxy --target "$HOST")
cp "$WORK/use/$HOST/dist/bench-proxy" "$WORK/bench-proxy"
say "built $WORK/bench-proxy"
