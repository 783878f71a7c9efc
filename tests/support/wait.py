"""Polling with a deadline, so tests never use fixed sleeps to synchronise."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(TimeoutError):
    """Raised when a condition did not become true in time; names what was awaited."""


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` until it returns a truthy value and return that value.

    Exceptions of the types in `ignore` count as "not yet" (e.g. connection refused while a
    server starts); any other exception propagates at once, so a crashed process fails fast.
    On timeout, raise `WaitTimeoutError` naming `what` and the last ignored error.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if value:
                return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise WaitTimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        # Polling interval, not synchronisation: the loop re-checks the real condition.
        time.sleep(min(interval, remaining))


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now (loopback by default)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive TCP ports free on `host` right now.

    For the charm's debug-port, above which it claims loopback ports for the
    mirrors' and the exporters' metrics servers.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        base = free_port(host)
        if base + count > 65536:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket(family, socket.SOCK_STREAM))
                    sock.bind((host, port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return whether a TCP connection to host:port is accepted right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_privileged_port(host: str = "127.0.0.1") -> int | None:
    """A port below 1024 free on `host` right now (binding needs root), or None."""
    for candidate in range(1023, 900, -1):
        with socket.socket() as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return None
