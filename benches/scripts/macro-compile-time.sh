#!/usr/bin/env bash
# Compile time of a `proxy!` expansion with N routes (the scaling benchmark's tables).
#
#   benches/scripts/macro-compile-time.sh [N...]     # default: 10 1000 10000
#
# Builds a throw-away binary crate in a temp directory whose `main.rs` includes
# `routes_N.rs` (written by benches/build.rs) and times, after its dependencies are
# built once, `cargo build --release` and `cargo check` of that crate alone (proc-macro
# expansion + type checking + codegen of the generated router). Set CARGO_TARGET_DIR to
# share compiled dependencies between runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIZES=("${@:-10 1000 10000}")
# shellcheck disable=SC2206
SIZES=(${SIZES[*]})
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# The route tables: build.rs writes them into the proxy-benches OUT_DIR.
cargo build --release -p proxy-benches --manifest-path "$ROOT/Cargo.toml" -q
OUT=$(ls -td "$CARGO_TARGET_DIR"/release/build/proxy-benches-*/out | head -1)

WORK=$(mktemp -d /tmp/proxy-macro-compile.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src"
cp "$ROOT/Cargo.lock" "$WORK/"
cat > "$WORK/Cargo.toml" <<TOML
[package]
name = "macro-compile-time"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
proxy-core = { path = "$ROOT/proxy-core" }

[workspace]
TOML

for n in "${SIZES[@]}"; do
    cp "$OUT/routes_$n.rs" "$WORK/src/routes.rs"
    cat > "$WORK/src/main.rs" <<'RS'
#[allow(dead_code)]
mod routes {
    include!("routes.rs");
}
fn main() {
    let proxy = routes::build();
    std::hint::black_box(routes::router(&proxy));
}
RS
    # Dependencies first, untimed.
    (cd "$WORK" && cargo build --release -q 2>/dev/null && cargo check -q 2>/dev/null) || true
    for mode in "build --release" "check"; do
        touch "$WORK/src/main.rs"
        start=$(date +%s.%N)
        # shellcheck disable=SC2086
        (cd "$WORK" && cargo $mode -q)
        end=$(date +%s.%N)
        printf '%6s routes: cargo %-15s %6.1f s\n' "$n" "$mode" "$(echo "$end - $start" | bc)"
    done
done
