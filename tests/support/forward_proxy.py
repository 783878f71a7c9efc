"""A tiny HTTP forward proxy on loopback that counts what it forwards.

Go never proxies requests to loopback addresses or `localhost`, so a test
that checks the registry's outbound proxy settings names its upstream
`something.test`: only the proxy resolves that name, to 127.0.0.1. Plain
HTTP only (absolute-URI requests); enough for an upstream served over HTTP.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
from collections import Counter

from .wait import free_port

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te"}


class ForwardProxy:
    """Forwards `GET`/`HEAD` for `*.test` hosts to 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: Counter[str] = Counter()
        """Requests forwarded, by upstream host:port."""
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.forward(self)

            def do_HEAD(self) -> None:
                proxy.forward(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients closing kept-alive connections: not the test's concern

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forward(self, request: http.server.BaseHTTPRequestHandler) -> None:
        target = urllib.parse.urlsplit(request.path)
        if not (target.hostname or "").endswith(".test"):
            request.send_error(502, "this proxy only knows *.test hosts")
            return
        self.requests[target.netloc] += 1
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream = http.client.HTTPConnection("127.0.0.1", target.port or 80, timeout=30)
        try:
            upstream.putrequest(request.command, path, skip_host=True, skip_accept_encoding=True)
            # Headers one by one: Go repeats Accept, once per manifest type.
            for name, value in request.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders()
            response = upstream.getresponse()
            body = response.read()
        finally:
            upstream.close()
        head = request.command == "HEAD"
        request.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and (head or name.lower() != "content-length"):
                request.send_header(name, value)
        if not head:
            request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if not head:
            request.wfile.write(body)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
