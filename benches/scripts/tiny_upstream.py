"""The upstream the bench scripts put behind a proxy: `200 ok` to every GET, HTTP/1.1
keep-alive, one thread per connection, on a free loopback port."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body in one write: unbuffered, the body waited for the head's ACK (Nagle),
    # which a proxy reading a whole response before answering delays by ≈ 40 ms.
    wbufsize = 4096

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True


def start():
    """Serves in a daemon thread; returns the port."""
    server = _Server(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]
