"""A TCP relay on loopback that keeps what clients sent: the wire, seen from the middle.

Two uses: it stands for the network between machines that the tests fold onto
one loopback (haproxy reaches "unit N" at 127.0.0.1N:PORT, the relay passes it
to that unit's registry on its own port), and it shows what a client really
sent (the S3 tests read the `Authorization` headers the registry signed).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading

from .wait import free_port

AUTHORIZATION = re.compile(rb"^authorization:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


class TcpRelay:
    """Accept on `host:port`, connect each client to `target`, copy both ways.

    Keeps up to `capture_limit` bytes of what clients sent (plain HTTP is
    readable there). Use as a context manager; stopping closes every
    connection and joins every thread.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        capture_limit: int = 64 * 1024 * 1024,
    ):
        self.target = target
        self.host = host
        self.port = port or free_port(host)
        self._capture_limit = capture_limit
        self._sent = bytearray()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> TcpRelay:
        listener = socket.create_server((self.host, self.port))
        self._listener = listener
        self._spawn(self._accept_loop, listener)
        return self

    def sent(self) -> bytes:
        """Everything clients sent so far (up to the capture limit)."""
        with self._lock:
            return bytes(self._sent)

    def authorizations(self) -> list[str]:
        """The `Authorization` header of every request clients sent."""
        return [value.decode(errors="replace") for value in AUTHORIZATION.findall(self.sent())]

    def stop(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [*([listener] if listener else []), *sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def __enter__(self) -> TcpRelay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is None:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if from_client:
                    with self._lock:
                        room = self._capture_limit - len(self._sent)
                        self._sent += data[: max(room, 0)]
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
