"""A gRPC server (Python `grpcio`) for the gRPC suite, on raw bytes through generic
handlers (no generated stubs). Service `e2e.Echo`:

  Unary         echoes the request; every `x-req-*` request metadata comes back as initial
                metadata `x-echo-*`, `x-peer` names the transport the call arrived on
                (`ipv4` or `unix`), and trailing metadata `x-trailer`, `x-trailer-bin` follow.
  Fail          aborts with NOT_FOUND, the request (UTF-8) as details, and trailing
                metadata `x-fail-reason: missing`.
  ServerStream  the request is `<count> <size>`: answers that many messages of that size,
                `item-<i>:` padded with `.`.
  ClientStream  answers `<count> <bytes> <sha256 hex>` of the messages it received.
  Bidi          echoes each message as soon as it arrives.
  Slow          answers only once cancelled (or after 20 s).

Usage: server.py UNIX_SOCKET_PATH. Serves on a free 127.0.0.1 port and on the socket;
prints `ready <port>` once serving; stops on SIGTERM or when stdin closes.
"""

import hashlib
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

MAX_MESSAGE = 16 * 1024 * 1024


def unary(request, context):
    echoed = [
        ("x-echo-" + key[len("x-req-"):], value)
        for key, value in context.invocation_metadata()
        if key.startswith("x-req-")
    ]
    echoed.append(("x-peer", context.peer().split(":", 1)[0]))
    context.send_initial_metadata(echoed)
    context.set_trailing_metadata((("x-trailer", "done"), ("x-trailer-bin", b"\xff\x00\x7f")))
    return request


def fail(request, context):
    context.set_trailing_metadata((("x-fail-reason", "missing"),))
    context.abort(grpc.StatusCode.NOT_FOUND, request.decode("utf-8"))


def server_stream(request, context):
    count, size = (int(n) for n in request.split())
    for i in range(count):
        yield f"item-{i}:".encode().ljust(size, b".")


def client_stream(request_iterator, context):
    count = 0
    size = 0
    digest = hashlib.sha256()
    for message in request_iterator:
        count += 1
        size += len(message)
        digest.update(message)
    return f"{count} {size} {digest.hexdigest()}".encode()


def bidi(request_iterator, context):
    for message in request_iterator:
        yield message


def slow(request, context):
    deadline = time.monotonic() + 20
    while context.is_active() and time.monotonic() < deadline:
        time.sleep(0.02)
    return b"too late"


def main(socket_path):
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("e2e.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.add_insecure_port("unix:" + socket_path)
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The test that started us owns our stdin: when it dies, stdin closes and we stop.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print(f"ready {port}", flush=True)
    stop.wait()
    server.stop(0)


main(sys.argv[1])
