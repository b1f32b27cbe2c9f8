#!/usr/bin/env bash
# Time from exec to the first request served by a release proxy binary, median of RUNS.
#
#   benches/scripts/startup.sh [BINARY]       # default: target/release/edge
#   RUNS=20 POLLER=python|curl benches/scripts/startup.sh
#
# Each run starts the binary on a free port (EDGE_ADDR) with API_ADDR pointing at a tiny
# upstream started once by this script, then polls `GET /api/` in a tight loop until a
# complete HTTP status line comes back through the proxy. The clock starts just before
# exec and stops when the status line arrives.
#
# POLLER=python (default) polls with raw sockets from the timing process itself, so the
# figure is the proxy's start-up plus one proxied request, at ~10 µs resolution.
# POLLER=curl runs `curl` in a bash loop as a shell user would; each attempt forks and
# execs curl (a few ms), so the figure is coarser and includes up to one curl start-up.
set -euo pipefail

BINARY=${1:-${CARGO_TARGET_DIR:-target}/release/edge}
RUNS=${RUNS:-20}
POLLER=${POLLER:-python}
[[ -x $BINARY ]] || { echo "no executable at $BINARY (cargo build --release -p edge)" >&2; exit 1; }

exec python3 - "$(dirname "$0")" "$BINARY" "$RUNS" "$POLLER" <<'PY'
import os, socket, statistics, subprocess, sys, time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, sys.argv[1])
import tiny_upstream

binary, runs, poller = sys.argv[2], int(sys.argv[3]), sys.argv[4]
upstream_port = tiny_upstream.start()

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

REQUEST = b"GET /api/ HTTP/1.1\r\nhost: startup\r\nconnection: close\r\n\r\n"

def poll_python(port, deadline):
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(REQUEST)
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"HTTP/1.1 "):
                    return data.split(b"\r\n", 1)[0].decode()
        except OSError:
            pass
    raise SystemExit("the proxy served nothing within 5 s")

def poll_curl(port, deadline):
    url = f"http://127.0.0.1:{port}/api/"
    while time.perf_counter() < deadline:
        result = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
                                capture_output=True, text=True)
        if result.returncode == 0 and result.stdout != "000":
            return "HTTP " + result.stdout
    raise SystemExit("the proxy served nothing within 5 s")

poll = poll_curl if poller == "curl" else poll_python
times, status = [], None
for _ in range(runs):
    port = free_port()
    env = dict(os.environ, EDGE_ADDR=f"127.0.0.1:{port}",
               API_ADDR=f"127.0.0.1:{upstream_port}", RUST_LOG="error")
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = poll(port, start + 5)
        times.append((time.perf_counter() - start) * 1000)
    finally:
        proc.terminate()
        proc.wait()

times.sort()
print(f"{binary}: exec -> first response ({status}), {runs} runs, poller {poller}")
print(f"  median {statistics.median(times):.2f} ms, min {times[0]:.2f} ms, max {times[-1]:.2f} ms")
PY
