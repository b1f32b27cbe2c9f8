#!/usr/bin/env bash
# Runs every check and test suite. Installs the real peers the suites need (nginx, curl,
# h2load, wrk, redis-server with redis-cli, Python websockets and grpcio) when they are
# missing, then:
# format check, clippy, release build of the apps the end-to-end suites run, and `cargo test`
# over the whole workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  missing+=(redis-server)
fi
if ((${#missing[@]})); then
  echo "==> installing test peers: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: need root to run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]/#nginx-light/nginx}"
fi

# The WebSocket suite's client and server (PyPI `websockets`).
if ! python3 -c 'import websockets' >/dev/null 2>&1; then
  echo "==> installing the Python websockets package"
  python3 -m pip install -q websockets
fi

# The gRPC suite's client and server (PyPI `grpcio`; raw-bytes handlers, no generated stubs).
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "==> installing the Python grpcio package"
  python3 -m pip install -q grpcio
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> building the binaries the end-to-end suites run"
cargo build --release --locked -p edge -p quickstart -p custom-filters

echo "==> cargo test"
cargo test --workspace --locked
