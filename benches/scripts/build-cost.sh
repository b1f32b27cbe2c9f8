#!/usr/bin/env bash
# Build cost and size of the release `edge` binary:
#   1. clean `cargo build --release -p edge` (wall and CPU time),
#   2. incremental rebuild after a one-line route edit in apps/edge,
#   3. binary size, unstripped and stripped.
#
#   benches/scripts/build-cost.sh            # SKIP_CLEAN=1 to reuse an existing build
#
# Everything happens in a copy of the workspace under /tmp with its own target
# directory, so the working tree and other builds are left alone.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/proxy-build-cost}
mkdir -p "$WORK/ws"
# The sources only (no target/ or .git), refreshed on every run.
(cd "$ROOT" && tar --exclude=./target --exclude=./.git --exclude='./benches/*/target' -cf - .) |
    tar -xf - -C "$WORK/ws"
export CARGO_TARGET_DIR="$WORK/target"
cd "$WORK/ws"

timed() { # prints "wall user+sys" seconds of the command
    /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$@" >/dev/null 2>&1
    read -r wall user sys <"$WORK/time"
    echo "$wall s wall, $(echo "$user + $sys" | bc) s CPU"
}

if [[ -z ${SKIP_CLEAN:-} ]]; then
    rm -rf "$CARGO_TARGET_DIR"
    cargo fetch -q
    echo "clean build:        $(timed cargo build --release -p edge)"
else
    cargo build --release -p edge -q
fi

MAIN=apps/edge/src/main.rs
cp "$MAIN" "$WORK/main.rs.orig"
sed -i 's|route prefix("/api/") => cluster(api),|route prefix("/api/v1/") => cluster(api),|' "$MAIN"
cmp -s "$MAIN" "$WORK/main.rs.orig" && { echo "the route edit did not apply" >&2; exit 1; }
echo "route edit rebuild: $(timed cargo build --release -p edge)"
cp "$WORK/main.rs.orig" "$MAIN"
echo "edit reverted:      $(timed cargo build --release -p edge)"

BIN="$CARGO_TARGET_DIR/release/edge"
cp "$BIN" "$WORK/edge.stripped"
strip "$WORK/edge.stripped"
echo "binary size:        $(stat -c %s "$BIN") bytes, stripped $(stat -c %s "$WORK/edge.stripped") bytes"
