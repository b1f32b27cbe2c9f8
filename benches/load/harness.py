#!/usr/bin/env python3
"""Side-by-side load harness: our proxy against Envoy, nginx, HAProxy and Pingora.

Normally started by `benches/load/run.sh`, which installs the peers and builds the two
Rust proxies first; see benches/load/README.md. Standard library only.

Topology of every measurement (2 CPUs):

    CPU 0: load client (wrk or h2load) + origin nginx (1 worker)
    CPU 1: the proxy under test (1 worker/thread), started fresh for every measured run

For each scenario, `--runs` rounds; in each round every proxy in turn is started fresh,
checked with one response, warmed up and measured once, so that a slow spell of the shared
machine falls on all the proxies rather than on one proxy's runs. Per run the harness
samples, before and after:

- the proxy's CPU time: utime + stime of /proc/<pid>/stat for the proxy and all its
  descendants (nginx's worker; /proc/<pid>/stat already sums a process's threads);
- the proxy's voluntary context switches (/proc/<pid>/task/*/status, every thread of it
  and its descendants): how often it went to sleep with nothing to do. A worker that
  drains its events faster sleeps more often, and each wake-up costs the CPU that wakes
  it (here the load client's), which is why req/s can favour a proxy that spends more
  CPU per request;
- the origin's stub_status `accepts` counter (a status server of its own, so no access
  log is needed): new upstream connections opened during the run, counted from 1 s into
  the run (a quarter of it if shorter) so that connections re-opened after the warm-up's
  abrupt end are left out.

Reported per (scenario, proxy): medians over the runs of req/s, p50/p99/p99.9 latency and
proxy CPU µs per request and sleeps per request; peak RSS (VmHWM summed over the proxy's processes at the end of
a run, the largest over the rounds);
the largest number of new upstream connections in one measured run; errors summed over the
measured runs (wrk: non-2xx/3xx >= 400 statuses + socket errors; h2load: failed, errored,
timed-out requests and non-2xx statuses).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS = os.path.join(HERE, "peers")
DONE_LUA = os.path.join(HERE, "done.lua")

CLIENT_CPU = "0"  # load client and origin
PROXY_CPU = "1"  # proxy under test

BEGIN_MARK = "<!-- load-harness:begin -->"
END_MARK = "<!-- load-harness:end -->"

SMALL_BODY = b"hello world\n"  # 12 bytes
LARGE_BODY = bytes((i % 26) + 97 for i in range(16 * 1024))


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    upstream: str  # "uds" or "tcp": how the proxy reaches the origin
    path: str
    body_len: int
    client: str  # "wrk" (HTTP/1.1 keep-alive) or "h2load" (h2c prior knowledge)


SCENARIOS = [
    Scenario("uds-12b", "UDS upstream, 12 B, HTTP/1.1 (wrk)", "uds", "/small", 12, "wrk"),
    Scenario("tcp-12b", "TCP upstream, 12 B, HTTP/1.1 (wrk)", "tcp", "/small", 12, "wrk"),
    Scenario("uds-16k", "UDS upstream, 16 KiB, HTTP/1.1 (wrk)", "uds", "/large", 16384, "wrk"),
    Scenario("h2c-uds-12b", "UDS upstream, 12 B, h2c downstream (h2load)", "uds", "/small", 12, "h2load"),
]
PROXIES = ["direct", "ours", "ours-pgo", "envoy", "nginx", "haproxy", "pingora"]
LABELS = {
    "direct": "direct (no proxy)",
    "ours": "**ours** (bench-proxy)",
    "ours-pgo": "**ours, PGO** (bench-proxy)",
    "envoy": "Envoy",
    "nginx": "nginx",
    "haproxy": "HAProxy",
    "pingora": "Pingora",
}


def log(msg: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(template: str, out: str, values: dict[str, str]) -> str:
    with open(os.path.join(PEERS, template)) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_0-9]+@", text)
    if leftover:
        raise RuntimeError(f"{template}: unfilled {sorted(set(leftover))}")
    with open(out, "w") as f:
        f.write(text)
    return out


# ---------------------------------------------------------------------------- processes


class Proc:
    """A process (group) the harness started; stopped by its own pid/pgid only."""

    live: list["Proc"] = []

    def __init__(self, name: str, argv: list[str], logdir: str, env: dict[str, str] | None = None,
                 stop_signal: int = signal.SIGTERM):
        self.name = name
        self.stop_signal = stop_signal
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
                                      start_new_session=True, stdin=subprocess.DEVNULL)
        self.pid = self.popen.pid
        Proc.live.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self in Proc.live:
            Proc.live.remove(self)
        if self.alive():
            try:
                os.killpg(self.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Anything left in the group (workers of a master that died first): kill it.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()

    @classmethod
    def stop_all(cls) -> None:
        for p in list(cls.live):
            p.stop()


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    """utime + stime of `root` and its descendants (each process's stat sums its threads)."""
    ticks = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return ticks / CLK_TCK


def cpu_busy(cpu: str) -> tuple[float, float]:
    """(busy, idle) seconds of one CPU from /proc/stat: busy counts every process on it
    and the kernel's interrupt and softirq work done there."""
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == f"cpu{cpu}":
                user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[1:9])
                return (user + nice + system + irq + softirq + steal) / CLK_TCK, (idle + iowait) / CLK_TCK
    return 0.0, 0.0


def status_field(path: str, key: str) -> int:
    """A numeric field of a /proc status file; 0 if the task is gone."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sleeps(root: int) -> int:
    """Voluntary context switches of every thread of `root` and its descendants."""
    total = 0
    for pid in descendants(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        total += sum(status_field(f"/proc/{pid}/task/{tid}/status", "voluntary_ctxt_switches")
                     for tid in tids)
    return total


def peak_rss_kib(root: int) -> int:
    return sum(status_field(f"/proc/{pid}/status", "VmHWM") for pid in descendants(root))


# ------------------------------------------------------------------------------- origin


class Origin:
    def __init__(self, workdir: str, user: str):
        self.dir = workdir
        self.sock = os.path.join(workdir, "origin.sock")
        self.port = free_port()
        self.h2c_port = free_port()
        self.status_port = free_port()
        www = os.path.join(workdir, "www")
        os.makedirs(www, exist_ok=True)
        os.makedirs(os.path.join(workdir, "origin-tmp"), exist_ok=True)
        with open(os.path.join(www, "small"), "wb") as f:
            f.write(SMALL_BODY)
        with open(os.path.join(www, "large"), "wb") as f:
            f.write(LARGE_BODY)
        conf = render("origin.nginx.conf", os.path.join(workdir, "origin.nginx.conf"), {
            "USER": user, "DIR": workdir, "ORIGIN_PORT": str(self.port),
            "ORIGIN_H2C_PORT": str(self.h2c_port), "STATUS_PORT": str(self.status_port),
        })
        self.proc = Proc("origin-nginx", ["taskset", "-c", CLIENT_CPU, "nginx", "-e", "stderr",
                                          "-p", workdir, "-c", conf], workdir)
        deadline = time.time() + 10
        while True:
            try:
                if os.path.exists(self.sock) and http_get(self.port, "/small") == (200, 12):
                    break
            except OSError:
                pass
            if time.time() > deadline or not self.proc.alive():
                raise RuntimeError(f"origin nginx did not start:\n{self.proc.tail()}")
            time.sleep(0.1)
        # nginx creates the socket as its master's user; let any worker user connect.
        os.chmod(self.sock, 0o666)

    def accepts(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        conn.request("GET", "/")
        text = conn.getresponse().read().decode()
        conn.close()
        # "Active connections: N \nserver accepts handled requests\n A H R \n..."
        return int(text.splitlines()[2].split()[0])

    def upstream(self, kind: str) -> str:
        return f"unix:{self.sock}" if kind == "uds" else f"127.0.0.1:{self.port}"


def http_get(port: int, path: str) -> tuple[int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, len(resp.read())
    finally:
        conn.close()


# ------------------------------------------------------------------------------ proxies


@dataclass
class Running:
    proc: Proc | None
    port: int  # HTTP/1.1 port
    h2c_port: int | None  # None: no h2c downstream


def start_proxy(name: str, scenario: Scenario, origin: Origin, args, workdir: str, user: str) -> Running:
    port = free_port()
    upstream = origin.upstream(scenario.upstream)
    pin = ["taskset", "-c", PROXY_CPU]
    pdir = os.path.join(workdir, f"{name}-{scenario.name}")
    os.makedirs(pdir, exist_ok=True)
    if name == "direct":
        # wrk cannot connect to a Unix socket: the ceiling is the origin over TCP loopback.
        return Running(None, origin.port, origin.h2c_port)
    if name in ("ours", "ours-pgo"):
        binary = args.bin_ours if name == "ours" else args.bin_ours_pgo
        proc = Proc(name, pin + [binary, "--concurrency", "1", "--log-level", "warn",
                                 "--drain-timeout", "1s"], pdir,
                    env={"BENCH_ADDR": f"127.0.0.1:{port}", "BENCH_UPSTREAM": upstream})
        running = Running(proc, port, port)
    elif name == "pingora":
        proc = Proc(name, pin + [args.bin_pingora], pdir, stop_signal=signal.SIGINT,
                    env={"BENCH_ADDR": f"127.0.0.1:{port}", "BENCH_UPSTREAM": upstream,
                         "BENCH_THREADS": "1"})
        running = Running(proc, port, port)
    elif name == "envoy":
        if scenario.upstream == "uds":
            endpoint = "{ pipe: { path: %s } }" % origin.sock
        else:
            endpoint = "{ socket_address: { address: 127.0.0.1, port_value: %d } }" % origin.port
        conf = render("envoy.yaml", os.path.join(pdir, "envoy.yaml"),
                      {"PORT": str(port), "ENDPOINT_ADDRESS": endpoint})
        proc = Proc(name, pin + [args.envoy, "-c", conf, "--concurrency", "1", "--log-level", "warn",
                                 "--disable-hot-restart", "--base-id", str(port)], pdir)
        running = Running(proc, port, port)
    elif name == "nginx":
        h2c_port = free_port()
        os.makedirs(os.path.join(pdir, "nginx-tmp"), exist_ok=True)
        conf = render("nginx.conf", os.path.join(pdir, "nginx.conf"), {
            "USER": user, "DIR": pdir, "PORT": str(port), "H2C_PORT": str(h2c_port),
            "UPSTREAM": upstream,  # nginx spells both forms the same: unix:/path, ip:port
        })
        proc = Proc(name, pin + ["nginx", "-e", "stderr", "-p", pdir, "-c", conf], pdir)
        running = Running(proc, port, h2c_port)
    elif name == "haproxy":
        server = f"unix@{origin.sock}" if scenario.upstream == "uds" else upstream
        conf = render("haproxy.cfg", os.path.join(pdir, "haproxy.cfg"),
                      {"DIR": pdir, "PORT": str(port), "UPSTREAM": server})
        proc = Proc(name, pin + ["haproxy", "-db", "-f", conf], pdir)
        running = Running(proc, port, port)
    else:
        raise ValueError(name)

    deadline = time.time() + 20
    while True:
        try:
            if http_get(port, scenario.path) == (200, scenario.body_len):
                break
        except OSError:
            pass
        if time.time() > deadline or not proc.alive():
            tail = proc.tail()
            proc.stop()
            raise RuntimeError(f"{name} did not serve {scenario.path} within 20 s:\n{tail}")
        time.sleep(0.1)
    return running


def h2c_works(port: int, path: str) -> bool:
    out = subprocess.run(["h2load", "-n", "4", "-c", "1", "-m", "2", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=20).stdout
    return bool(re.search(r"status codes: 4 2xx", out))


# --------------------------------------------------------------------------------- load


def run_wrk(port: int, path: str, duration: float, args) -> dict:
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c", str(args.connections),
            "-d", f"{max(1, round(duration))}s", "--latency", "-s", DONE_LUA,
            f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"^HARNESS (\{.*\})$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    s = json.loads(m.group(1))
    errors = {k: s[k] for k in ("connect", "read", "write", "timeout", "status")}
    return {
        "requests": s["requests"],
        "rps": s["requests"] / (s["duration_us"] / 1e6),
        "p50_us": s["p50"], "p90_us": s["p90"], "p99_us": s["p99"], "p999_us": s["p999"],
        "errors": errors,
    }


def percentile(sorted_values: list[int], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[k])


def run_h2load(port: int, path: str, duration: float, args, tmp: str) -> dict:
    logfile = os.path.join(tmp, "h2load-requests.tsv")
    argv = ["taskset", "-c", CLIENT_CPU, "h2load", "-c", str(args.connections), "-m", str(args.h2_streams),
            "-t", "1", "-D", str(max(1, round(duration))), "--log-file", logfile,
            f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    fin = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not (fin and req and codes):
        raise RuntimeError(f"h2load output not understood:\n{out}")
    latencies = []
    with open(logfile) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                latencies.append(int(parts[2]))
    os.unlink(logfile)
    latencies.sort()
    done = int(req.group(3))
    return {
        "requests": done,
        "rps": float(fin.group(2)),
        "p50_us": percentile(latencies, 50), "p90_us": percentile(latencies, 90),
        "p99_us": percentile(latencies, 99), "p999_us": percentile(latencies, 99.9),
        "errors": {"failed": int(req.group(5)), "errored": int(req.group(6)), "timeout": int(req.group(7)),
                   "non2xx": int(codes.group(2)) + int(codes.group(3)) + int(codes.group(4))},
    }


def _catching(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # re-raised in the measuring thread
        return e


def run_load(scenario: Scenario, port: int, duration: float, args, tmp: str) -> dict:
    if scenario.client == "wrk":
        return run_wrk(port, scenario.path, duration, args)
    return run_h2load(port, scenario.path, duration, args, tmp)


# ---------------------------------------------------------------------------- measuring


@dataclass
class Result:
    scenario: str
    proxy: str
    status: str = "ok"  # "ok", "n/a: ...", "failed: ..."
    runs: list[dict] = field(default_factory=list)
    peak_rss_kib: int | None = None

    def median(self, key: str) -> float | None:
        values = [r[key] for r in self.runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    def errors(self) -> int:
        return sum(sum(r["errors"].values()) for r in self.runs)

    def new_conns(self) -> int | None:
        values = [r["new_upstream_conns"] for r in self.runs]
        return max(values) if values else None


def measure_round(result: Result, scenario: Scenario, origin: Origin, args, workdir: str, user: str,
                  round_no: int) -> None:
    """One round for one proxy: started fresh, warmed up, one measured run, stopped. The
    run is appended to `result`; a failure sets its status (later rounds then skip it)."""
    name = result.proxy
    h2 = scenario.client == "h2load"
    settle = min(1.0, args.duration / 4)
    try:
        running = start_proxy(name, scenario, origin, args, workdir, user)
    except RuntimeError as e:
        log(str(e))
        result.status = "failed: did not start"
        return
    try:
        port = running.h2c_port if h2 else running.port
        if h2 and (port is None or not h2c_works(port, scenario.path)):
            result.status = "n/a: no h2c downstream"
            return
        log(f"{scenario.name} / {name}: round {round_no}/{args.runs}: warm-up {args.warmup}s")
        run_load(scenario, port, args.warmup, args, workdir)
        cpu0 = cpu_seconds(running.proc.pid) if running.proc else None
        sleeps0 = sleeps(running.proc.pid) if running.proc else None
        origin_cpu0 = cpu_seconds(origin.proc.pid)
        cpus0 = {cpu: cpu_busy(cpu) for cpu in (CLIENT_CPU, PROXY_CPU)}
        acc0 = origin.accepts()
        # The load runs in a thread so that the accepts counter can also be sampled once
        # the run has settled: when a client stops, it closes connections with requests
        # in flight, and a proxy must drop those upstream connections mid-response; the
        # warm-up's last moments are re-opened in the run's first. Counting from `settle`
        # on shows steady-state reuse; the whole-run count is kept in the JSON.
        box: dict = {}
        worker = threading.Thread(daemon=True, target=lambda: box.update(
            r=_catching(run_load, scenario, port, args.duration, args, workdir)))
        worker.start()
        time.sleep(settle)
        acc_mid = origin.accepts()
        worker.join()
        acc1 = origin.accepts()
        cpu1 = cpu_seconds(running.proc.pid) if running.proc else None
        sleeps1 = sleeps(running.proc.pid) if running.proc else None
        origin_cpu1 = cpu_seconds(origin.proc.pid)
        cpus1 = {cpu: cpu_busy(cpu) for cpu in (CLIENT_CPU, PROXY_CPU)}
        r = box["r"]
        if isinstance(r, BaseException):
            raise r
        # Each status request after the first is itself one accept.
        r["new_upstream_conns"] = acc1 - acc_mid - 1
        r["new_upstream_conns_whole_run"] = acc1 - acc0 - 2
        n = max(1, r["requests"])
        r["proxy_cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / n if cpu0 is not None else None
        r["origin_cpu_us_per_req"] = (origin_cpu1 - origin_cpu0) * 1e6 / n
        # Whole-CPU figures: req/s is set by whichever CPU runs out first, and the client
        # CPU's share (load client, origin, their kernel work) moves with the proxy's
        # behaviour too (how many writes a response takes, how many connections it spreads
        # the origin's requests over).
        for cpu, role in ((CLIENT_CPU, "client"), (PROXY_CPU, "proxy")):
            busy = cpus1[cpu][0] - cpus0[cpu][0]
            idle = cpus1[cpu][1] - cpus0[cpu][1]
            r[f"{role}_cpu_busy_us_per_req"] = busy * 1e6 / n
            r[f"{role}_cpu_idle_share"] = idle / max(busy + idle, 1e-9)
        r["proxy_sleeps_per_req"] = (sleeps1 - sleeps0) / n if sleeps0 is not None else None
        r["round"] = round_no
        result.runs.append(r)
        log(f"{scenario.name} / {name}: round {round_no}/{args.runs}: {r['rps']:.0f} req/s, "
            f"p99 {r['p99_us']:.0f} µs, cpu/req "
            f"{'-' if r['proxy_cpu_us_per_req'] is None else format(r['proxy_cpu_us_per_req'], '.1f')} µs, "
            f"new conns {r['new_upstream_conns']}, errors {sum(r['errors'].values())}")
        if running.proc:
            rss = peak_rss_kib(running.proc.pid)
            result.peak_rss_kib = max(result.peak_rss_kib or 0, rss) or None
            if not running.proc.alive():
                result.status = "failed: exited during the run"
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        log(f"{scenario.name} / {name}: {e}")
        result.status = f"failed: {type(e).__name__}"
    finally:
        if running.proc:
            running.proc.stop()


def measure(scenario: Scenario, proxies: list[str], origin: Origin, args, workdir: str,
            user: str) -> list[Result]:
    """Every proxy in `scenario`, in rounds: each round runs each proxy once, in turn, so
    a slow spell of the shared machine falls on all of them rather than on whichever
    proxy's runs it coincided with; the median over rounds is reported."""
    results = [Result(scenario.name, name) for name in proxies]
    for result in results:
        if result.proxy == "ours-pgo" and not args.bin_ours_pgo:
            result.status = "n/a: not built (--no-pgo)"
        elif result.proxy == "ours-pgo" and not os.access(args.bin_ours_pgo, os.X_OK):
            result.status = "failed: not built (benches/load/pgo-build.sh)"
    for round_no in range(1, args.runs + 1):
        for result in results:
            if result.status == "ok":
                measure_round(result, scenario, origin, args, workdir, user, round_no)
    return results


def train(scenarios: list[Scenario], origin: Origin, args, workdir: str, user: str) -> int:
    """Runs each scenario's load through an instrumented build of ours, which writes its
    profile when it exits; a proxy that does not exit cleanly wrote none, so that fails."""
    for scenario in scenarios:
        running = start_proxy("ours", scenario, origin, args, workdir, user)
        port = running.port
        try:
            log(f"{scenario.name}: training load {args.duration:g}s")
            r = run_load(scenario, port, args.duration, args, workdir)
            log(f"{scenario.name}: {r['requests']} requests, errors {sum(r['errors'].values())}")
        finally:
            running.proc.stop()
        code = running.proc.popen.returncode
        if code != 0:
            log(f"{scenario.name}: the instrumented proxy exited with {code}; its profile is incomplete")
            return 1
    return 0


# ------------------------------------------------------------------------------ reports


def fmt_us(v: float | None) -> str:
    if v is None or v != v:
        return "–"
    if v >= 10_000:
        return f"{v / 1000:.1f} ms"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.0f} µs"


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | proxy | req/s | % of direct | p50 | p99 | p99.9 | proxy CPU/req | sleeps/req | peak RSS | new upstream conns | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_scenario: dict[str, list[Result]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario, []).append(r)
    for scen in SCENARIOS:
        rows = by_scenario.get(scen.name, [])
        direct = next((r.median("rps") for r in rows if r.proxy == "direct" and r.runs), None)
        for r in rows:
            label = LABELS[r.proxy]
            if r.status != "ok" or not r.runs:
                lines.append(f"| {scen.name} | {label} | {r.status} | | | | | | | | | |")
                continue
            rps = r.median("rps")
            share = f"{100 * rps / direct:.0f} %" if direct and r.proxy != "direct" else ""
            cpu = r.median("proxy_cpu_us_per_req")
            slept = r.median("proxy_sleeps_per_req")
            lines.append(
                f"| {scen.name} | {label} | {rps:,.0f} | {share} | {fmt_us(r.median('p50_us'))} | "
                f"{fmt_us(r.median('p99_us'))} | {fmt_us(r.median('p999_us'))} | "
                f"{'–' if cpu is None else f'{cpu:.1f} µs'} | "
                f"{'–' if slept is None else f'{slept:.3f}'} | "
                f"{'–' if r.peak_rss_kib is None else f'{r.peak_rss_kib / 1024:.1f} MiB'} | "
                f"{'–' if r.proxy == 'direct' else r.new_conns()} | {r.errors()} |")
    return "\n".join(lines)


# The targets: CPU per request at most this multiple of nginx's in the same run.
CPU_VS_NGINX_TARGET = {"uds-12b": 0.85, "tcp-12b": 0.85, "uds-16k": 1.0, "h2c-uds-12b": 1.0}
RSS_TARGET_KIB = 8_000_000 / 1024  # 8 MB under the load
PEER_PROXIES = ["envoy", "nginx", "haproxy", "pingora"]


def per_round(result: Result, key: str) -> dict[int, float]:
    return {r["round"]: r[key] for r in result.runs if r.get(key) is not None}


def targets(results: list[Result]) -> str:
    """Each of our builds against the issue's targets, from the same runs as the table:
    medians, and for CPU per request also round by round (a round runs every proxy once,
    in turn, so its ratios compare runs minutes apart rather than a whole run apart)."""
    mark = {True: "✓", False: "✗"}

    def against_best(mine: Result, peers: list[Result], key: str, higher_is_better: bool) -> str:
        """Our median of `key` over the best peer's, named, marked met when not worse."""
        pick = max if higher_is_better else min
        best = pick(peers, key=lambda r: r.median(key))
        ratio = mine.median(key) / best.median(key)
        met = ratio >= 1.0 if higher_is_better else ratio <= 1.0
        return f"{ratio:.2f}× {LABELS[best.proxy]} {mark[met]}"

    lines = [
        "| scenario | build | CPU/req vs nginx (target) | per round | CPU/req vs the lowest peer's | "
        "req/s vs the most of a peer | p99 vs the lowest of a peer | peak RSS (≤ 8 MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scen in SCENARIOS:
        rows = {r.proxy: r for r in results if r.scenario == scen.name and r.status == "ok" and r.runs}
        peers = [rows[p] for p in PEER_PROXIES if p in rows and rows[p].median("proxy_cpu_us_per_req")]
        nginx = rows.get("nginx")
        for ours, build in (("ours", "ours"), ("ours-pgo", "ours, PGO")):
            mine = rows.get(ours)
            if mine is None or not peers:
                continue
            cpu = mine.median("proxy_cpu_us_per_req")
            cells = [scen.name, build]
            if nginx is not None and nginx.median("proxy_cpu_us_per_req"):
                target = CPU_VS_NGINX_TARGET[scen.name]
                ratio = cpu / nginx.median("proxy_cpu_us_per_req")
                mine_r, theirs = per_round(mine, "proxy_cpu_us_per_req"), per_round(nginx, "proxy_cpu_us_per_req")
                rounds = [mine_r[i] / theirs[i] for i in sorted(mine_r) if i in theirs]
                met = sum(r <= target for r in rounds)
                cells += [f"{ratio:.2f}× (≤ {target:.2f}×) {mark[ratio <= target]}",
                          f"{', '.join(f'{r:.2f}' for r in rounds)} ({met}/{len(rounds)} met)"]
            else:
                cells += ["–", "–"]
            cells += [against_best(mine, peers, "proxy_cpu_us_per_req", higher_is_better=False),
                      against_best(mine, peers, "rps", higher_is_better=True),
                      against_best(mine, peers, "p99_us", higher_is_better=False)]
            rss = mine.peak_rss_kib
            cells.append("–" if rss is None else f"{rss / 1024:.1f} MiB {mark[rss <= RSS_TARGET_KIB]}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cmd_version(argv: list[str], pattern: str = r".+") -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout + out.stderr).strip()
    m = re.search(pattern, text)
    if m:
        return m.group(m.lastindex or 0).strip()
    return text.splitlines()[0] if text else "?"


def pingora_version() -> str:
    try:
        with open(os.path.join(ROOT, "benches", "pingora-proxy", "Cargo.lock")) as f:
            m = re.search(r'name = "pingora"\nversion = "([^"]+)"', f.read())
            return f"pingora {m.group(1)}" if m else "pingora ?"
    except OSError:
        return "pingora ?"


def machine() -> dict[str, str]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(), "memory": mem}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def report(results: list[Result], args, started: datetime.datetime, load_before: str, load_after: str) -> str:
    m = machine()
    versions = [
        cmd_version(["nginx", "-v"], r"nginx/\S+"),
        cmd_version(["haproxy", "-v"], r"HAProxy version \S+"),
        "envoy " + cmd_version([args.envoy, "--version"], r"version: \w+/(\d+\.\d+\.\d+)/"),
        pingora_version(),
        cmd_version(["wrk", "-v"], r"wrk \S+"),
        cmd_version(["h2load", "--version"], r"h2load \S+"),
        cmd_version(["rustc", "-V"], r"rustc \S+"),
    ]
    mode = "quick" if args.quick else "default"
    h2 = f"`h2load -c {args.connections} -m {args.h2_streams} -t 1` (h2c prior knowledge)"
    return "\n".join([
        f"### Latest run: {started.strftime('%Y-%m-%d %H:%M UTC')} ({mode} mode)",
        "",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; "
        f"load average before/after: {load_before} / {load_after}",
        f"- versions: {', '.join(versions)}",
        f"- load: `wrk -t1 -c {args.connections} --latency` or {h2}; {args.runs} round(s), each starting "
        f"every proxy fresh in turn: warm-up {args.warmup:g} s, then one measured run of {args.duration:g} s; "
        "medians over the rounds shown",
        "- columns: latency percentiles are wrk's (p99.9 from its Lua `done()` hook) or computed from "
        "h2load's per-request log; *proxy CPU/req* is utime+stime of all the proxy's processes and "
        "threads over the run divided by the requests; *sleeps/req* is their voluntary context "
        "switches over the run divided by the requests (how often the proxy ran out of work: each "
        "wake-up costs CPU 0, the load client's, so at equal CPU/req the proxy that sleeps less "
        "serves more req/s); *peak RSS* is VmHWM summed over its processes; "
        "*new upstream conns* is the origin's stub_status `accepts` delta in the worst measured run, "
        f"counted from {min(1.0, args.duration / 4):g} s into the run (the warm-up's end aborts the requests in flight, and "
        "the proxies re-open those connections at once): 0 = every request reused a pooled "
        "connection, churn would show as thousands; *errors* are summed over the measured runs",
        "- `direct` is the load client straight to the origin over TCP loopback (wrk cannot use a Unix "
        "socket; h2c goes to the origin's `http2` port), the ceiling for the row group",
        "- *ours* is `bench-proxy` as shipped: `cargo ship` (the `dist` profile, linked statically "
        "against glibc)",
        "- *ours, PGO* is the same bench-proxy, profile and linking built with profile-guided "
        "optimisation (`benches/load/pgo-build.sh`): trained on these four scenarios' loads, so it "
        "shows what PGO gives a proxy trained on its own traffic",
        "",
        table(results),
        "",
        "Against the targets (listed above the table), computed by the harness from the table's "
        "runs: ratios of our medians to nginx's and to the best peer's (✓ met, ✗ not), and CPU "
        "per request against nginx's round by round.",
        "",
        targets(results),
    ])


def update_doc(path: str, section: str) -> None:
    with open(path) as f:
        text = f.read()
    block = f"{BEGIN_MARK}\n{section}\n{END_MARK}"
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        _, tail = rest.split(END_MARK, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 s runs, 1 s warm-up, 1 run")
    ap.add_argument("--duration", type=float, help="seconds per measured run (default 8; quick 2)")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up per proxy and scenario (default 5; quick 1)")
    ap.add_argument("--runs", type=int, help="rounds per scenario: measured runs per proxy (default 3; quick 1)")
    ap.add_argument("--connections", type=int, default=50, help="client connections (default 50)")
    ap.add_argument("--h2-streams", type=int, default=10, help="h2load streams per connection (default 10)")
    ap.add_argument("--proxies", default=",".join(PROXIES), help=f"comma-separated subset of {','.join(PROXIES)}")
    ap.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                    help=f"comma-separated subset of {','.join(s.name for s in SCENARIOS)}")
    ap.add_argument("--bin-ours", default=os.path.join(ROOT, "target", "release", "bench-proxy"))
    ap.add_argument("--bin-ours-pgo", default=os.path.join(ROOT, "target", "pgo", "bench-proxy"),
                    help="bench-proxy built with profile-guided optimisation (benches/load/pgo-build.sh)")
    ap.add_argument("--train", action="store_true",
                    help="PGO training: run every scenario's load through --bin-ours (an instrumented "
                         "build) for --duration seconds, stop it so it writes its profile, and exit")
    ap.add_argument("--bin-pingora", default=os.path.join(ROOT, "benches", "pingora-proxy", "target",
                                                          "release", "pingora-bench-proxy"))
    ap.add_argument("--envoy", default=shutil.which("envoy") or "envoy", help="path of the real Envoy binary")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"),
                    help="markdown file whose load-harness section is replaced")
    ap.add_argument("--no-doc", action="store_true", help="print the table only")
    ap.add_argument("--json", help="also write raw per-run results here")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    args.duration = args.duration or (2 if args.quick else 8)
    args.warmup = args.warmup or (1 if args.quick else 5)
    args.runs = args.runs or (1 if args.quick else 3)

    proxies = [p for p in args.proxies.split(",") if p]
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios.split(",")]
    unknown = set(proxies) - set(PROXIES)
    if unknown or not scenarios:
        ap.error(f"unknown proxies {sorted(unknown)} or no scenario selected")
    if (os.cpu_count() or 1) < 2:
        ap.error("needs 2 CPUs: the proxy on CPU 1, client and origin on CPU 0")
    for tool in ["nginx", "wrk", "h2load", "taskset"]:
        if not shutil.which(tool):
            ap.error(f"{tool} not found (benches/load/run.sh installs it)")

    user = pwd.getpwuid(os.getuid()).pw_name
    workdir = tempfile.mkdtemp(prefix="proxy-load-")
    os.chmod(workdir, 0o755)  # nginx workers (another user when not run as root) read www/

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # The `finally` below stops every process the harness started (by its own process
    # group) and removes the temp dir, whichever way the run ends.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = loadavg()
    results: list[Result] = []
    try:
        origin = Origin(workdir, user)
        log(f"origin nginx up (pid {origin.proc.pid}); workdir {workdir}")
        if args.train:
            return train(scenarios, origin, args, workdir, user)
        for scenario in scenarios:
            results.extend(measure(scenario, proxies, origin, args, workdir, user))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        Proc.stop_all()
        if args.keep_tmp:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    section = report(results, args, started, load_before, loadavg())
    print(section)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in results], f, indent=1)
    if not args.no_doc:
        update_doc(args.doc, section)
        log(f"wrote the table into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
