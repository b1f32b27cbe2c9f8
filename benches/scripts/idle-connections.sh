#!/usr/bin/env bash
# Memory of idle keep-alive client connections: VmRSS of a proxy binary before and after
# CONNECTIONS clients each send one request, read the response and stay connected.
#
#   benches/scripts/idle-connections.sh [BINARY]      # default: target/release/edge
#   CONNECTIONS=10000 benches/scripts/idle-connections.sh "target/$(rustc --print host-tuple)/dist/edge"  # cargo ship -p edge
#   PROTOCOL=h2c benches/scripts/idle-connections.sh  # HTTP/2 clients (prior knowledge)
#
# The binary runs with one worker (`--concurrency 1`) on a free port (EDGE_ADDR), with
# API_ADDR pointing at a tiny upstream this script runs; each client in turn sends
# `GET /api/idle` over its own connection and reads the response. Prints idle RSS, the RSS added by the idle
# connections and the cost per connection. Each process (this script's clients, the
# proxy) needs an open-file limit above CONNECTIONS: raised here when the hard limit allows.
set -euo pipefail

BINARY=${1:-${CARGO_TARGET_DIR:-target}/release/edge}
CONNECTIONS=${CONNECTIONS:-10000}
[[ -x $BINARY ]] || { echo "no executable at $BINARY (cargo build --release -p edge)" >&2; exit 1; }
ulimit -n "$(( CONNECTIONS + 1000 ))" 2>/dev/null || {
    echo "cannot raise the open-file limit to $(( CONNECTIONS + 1000 )) (ulimit -Hn: $(ulimit -Hn))" >&2
    exit 1
}

exec python3 - "$(dirname "$0")" "$BINARY" "$CONNECTIONS" <<'PY'
import os, socket, subprocess, sys, time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, sys.argv[1])
import tiny_upstream

binary, count = sys.argv[2], int(sys.argv[3])
upstream_port = tiny_upstream.start()

with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]

env = dict(os.environ, EDGE_ADDR=f"127.0.0.1:{port}",
           API_ADDR=f"127.0.0.1:{upstream_port}",
           HUGO_SOCK="/nonexistent/idle-connections.sock")
proxy = subprocess.Popen([binary, "--log-level", "error", "--concurrency", "1"], env=env)

def rss_kib():
    with open(f"/proc/{proxy.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")

REQUEST = b"GET /api/idle HTTP/1.1\r\nhost: idle\r\n\r\n"
H2C = os.environ.get("PROTOCOL", "http1") == "h2c"

def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

# The preface, empty SETTINGS, and stream 1: GET /api/idle. HPACK: :method GET and
# :scheme http indexed (0x82, 0x86), :path and :authority literal with indexed names.
H2_REQUEST = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0)
              + frame(0x1, 0x5, 1, b"\x82\x86\x44\x09/api/idle\x41\x04idle"))

def answered_h2(sock):
    """Reads frames until stream 1 ends; acknowledges the server's SETTINGS."""
    data, ended = b"", False
    while not ended:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the proxy closed a connection")
        data += chunk
        while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
            length, kind, flags = int.from_bytes(data[:3], "big"), data[3], data[4]
            stream = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
            payload, data = data[9:9 + length], data[9 + length:]
            if kind == 0x4 and not flags & 0x1:
                sock.sendall(frame(0x4, 0x1, 0))
            # :status 200 is static-table entry 8, sent indexed.
            if kind == 0x1 and stream == 1 and payload[:1] != b"\x88":
                raise RuntimeError(f"unexpected response head: {payload[:20]!r}")
            if kind in (0x0, 0x1) and stream == 1 and flags & 0x1:
                ended = True

def answered(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the proxy closed a connection")
        data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {data[:60]!r}")

clients = []
try:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as first:
                first.sendall(H2_REQUEST if H2C else REQUEST)
                (answered_h2 if H2C else answered)(first)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            time.sleep(0.05)
    time.sleep(0.5)
    idle = rss_kib()
    # One request at a time: the tiny upstream serves them over one pooled connection.
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(H2_REQUEST if H2C else REQUEST)
        (answered_h2 if H2C else answered)(sock)
        clients.append(sock)
    time.sleep(1)
    loaded = rss_kib()
    added = loaded - idle
    print(f"binary: {binary}")
    print(f"idle RSS: {idle / 1024:.1f} MiB")
    print(f"{count} idle keep-alive {'h2c' if H2C else 'HTTP/1.1'} connections added: {added / 1024:.1f} MiB "
          f"({added * 1024 / count / 1000:.1f} kB each)")
finally:
    # Closed first: an HTTP/2 client that never acknowledges the drain's PING (this
    # one) would hold the proxy's exit until its drain timeout.
    for sock in clients:
        sock.close()
    proxy.terminate()
    proxy.wait()
PY
