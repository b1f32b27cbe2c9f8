"""A gRPC client (Python `grpcio`, raw bytes: no generated stubs) that exercises the
`e2e.Echo` service of server.py through the proxy.

Usage: client.py PROXY_ADDR. The channel authority picks the proxy's virtual host:
`tcp.grpc` and `unix.grpc` reach the server over TCP and over its Unix socket. Prints one
line per check (`<name> ok ...`, or `<name> FAILED: ...` and carries on); exits non-zero
if any check failed.
"""

import hashlib
import queue
import sys
import time
import traceback

import grpc

MAX_MESSAGE = 16 * 1024 * 1024
FAILED = []


def channel(addr, authority):
    return grpc.insecure_channel(
        addr,
        options=[
            ("grpc.default_authority", authority),
            ("grpc.enable_http_proxy", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            # One call, one attempt: a retry would hide what the proxy answered.
            ("grpc.enable_retries", 0),
        ],
    )


def check(name, run):
    try:
        detail = run()
    except Exception as error:  # noqa: BLE001 - every failure is reported, then we go on
        FAILED.append(name)
        summary = f"{type(error).__name__}: {error}".replace("\n", " | ")
        print(f"{name} FAILED: {summary}", flush=True)
        traceback.print_exc(file=sys.stderr)
        return
    print(f"{name} ok{' ' + detail if detail else ''}", flush=True)


def expect(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def rpc_error(call):
    """Runs `call`, which must fail, and returns its grpc.RpcError."""
    try:
        result = call()
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"the call succeeded: {result!r}")


def service_checks(addr, authority, transport):
    ch = channel(addr, authority)
    prefix = authority.split(".")[0]

    def unary():
        call = ch.unary_unary("/e2e.Echo/Unary")
        response, outcome = call.with_call(
            b"ping through the proxy",
            metadata=(("x-req-id", "abc-123"), ("x-req-blob-bin", b"\x00\x01\xfe\xff")),
            timeout=20,
        )
        expect(response, b"ping through the proxy", "response")
        expect(outcome.code(), grpc.StatusCode.OK, "code")
        initial = dict(outcome.initial_metadata())
        expect(initial.get("x-echo-id"), "abc-123", "echoed metadata")
        expect(initial.get("x-echo-blob-bin"), b"\x00\x01\xfe\xff", "echoed binary metadata")
        expect(initial.get("x-peer"), transport, "transport the server saw")
        trailing = dict(outcome.trailing_metadata())
        expect(trailing.get("x-trailer"), "done", "trailing metadata")
        expect(trailing.get("x-trailer-bin"), b"\xff\x00\x7f", "binary trailing metadata")
        return transport

    def server_streaming():
        # 2000 x 4 KiB: more than any flow-control window on the way.
        call = ch.unary_stream("/e2e.Echo/ServerStream")
        got = list(call(b"2000 4096", timeout=20))
        expect(len(got), 2000, "message count")
        for i, message in enumerate(got):
            expect(message, f"item-{i}:".encode().ljust(4096, b"."), f"message {i}")
        return str(len(got))

    def client_streaming():
        messages = [bytes([i % 251]) * ((i * 37) % 4096) for i in range(500)]
        call = ch.stream_unary("/e2e.Echo/ClientStream")
        digest = hashlib.sha256(b"".join(messages)).hexdigest()
        size = sum(len(m) for m in messages)
        expect(call(iter(messages), timeout=20), f"500 {size} {digest}".encode(), "summary")
        return "500"

    def bidi_interleaved():
        # Message i+1 is sent only after the echo of message i came back: nothing along
        # the way may wait for the end of the request stream.
        outgoing = queue.Queue()

        def requests():
            while (message := outgoing.get()) is not None:
                yield message

        call = ch.stream_stream("/e2e.Echo/Bidi")
        responses = call(requests(), timeout=20)
        for i in range(200):
            message = f"m{i}".encode() * (i + 1)
            outgoing.put(message)
            expect(next(responses), message, f"echo {i}")
        outgoing.put(None)
        expect(list(responses), [], "after half-close")
        expect(responses.code(), grpc.StatusCode.OK, "code")
        return "200"

    def large():
        payload = bytes((i * 7) % 251 for i in range(4 * 1024 * 1024))
        call = ch.unary_unary("/e2e.Echo/Unary")
        response = call(payload, timeout=20)
        if response != payload:
            raise AssertionError(f"got {len(response)} bytes back, not the 4 MiB sent")
        return str(len(response))

    def status_and_details():
        details = "widget 42 not found (ünïcode ✓, 100%)"
        call = ch.unary_unary("/e2e.Echo/Fail")
        error = rpc_error(lambda: call(details.encode("utf-8"), timeout=20))
        expect(error.code(), grpc.StatusCode.NOT_FOUND, "code")
        expect(error.details(), details, "details")
        expect(dict(error.trailing_metadata()).get("x-fail-reason"), "missing", "trailers")
        return error.code().name

    def deadline():
        call = ch.unary_unary("/e2e.Echo/Slow")
        start = time.monotonic()
        error = rpc_error(lambda: call(b"", timeout=0.5))
        elapsed = time.monotonic() - start
        expect(error.code(), grpc.StatusCode.DEADLINE_EXCEEDED, "code")
        if not 0.4 <= elapsed < 3:
            raise AssertionError(f"the call returned after {elapsed:.2f}s (deadline 0.5s)")
        return error.code().name

    check(f"{prefix} unary+metadata", unary)
    check(f"{prefix} server-streaming", server_streaming)
    check(f"{prefix} client-streaming", client_streaming)
    check(f"{prefix} bidi-interleaved", bidi_interleaved)
    check(f"{prefix} large", large)
    check(f"{prefix} status", status_and_details)
    check(f"{prefix} deadline", deadline)
    ch.close()


def proxy_error_checks(addr):
    """Calls the proxy answers itself: the client must see the gRPC status and message."""

    def failing(name, authority, method):
        def run():
            ch = channel(addr, authority)
            try:
                error = rpc_error(lambda: ch.unary_unary(method)(b"x", timeout=20))
            finally:
                ch.close()
            return f"{error.code().name} {error.details()}"

        check(name, run)

    failing("no-virtual-host", "nowhere.grpc", "/e2e.Echo/Unary")
    failing("no-route", "tcp.grpc", "/e2e.Missing/Call")
    failing("upstream-down-tcp", "down.grpc", "/e2e.Echo/Unary")
    failing("upstream-down-unix", "gone.grpc", "/e2e.Echo/Unary")
    failing("upstream-reset", "reset.grpc", "/e2e.Echo/Unary")


def main(addr):
    service_checks(addr, "tcp.grpc", "ipv4")
    service_checks(addr, "unix.grpc", "unix")
    proxy_error_checks(addr)
    sys.exit(1 if FAILED else 0)


main(sys.argv[1])
