"""Steady HTTP GETs against a server, each on a new connection, tallied by how they ended.

For tests of restarts: a request is *refused* when it got no response at all
(connection refused, or reset before the status line: the server never took
it), *cut* when its response started and then broke off, *failed* when it
was answered with an unexpected status. Downloads are read at a bounded pace,
so that they are still in flight when a restart comes.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

CHUNK = 256 * 1024
RETRY_PAUSE = 0.01
"""After a refused request, as a client retrying would (and not to spin)."""


@dataclass(frozen=True)
class Target:
    """A path to GET and, optionally, the sha256 digest its body must have."""

    path: str
    digest: str | None = None
    accept: str = "*/*"


@dataclass
class Tally:
    """How the requests ended, and when each complete download ran (monotonic time)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    downloads: list[tuple[float, float]] = field(default_factory=list)
    refusals: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def refused_windows(self, gap: float = 0.2) -> list[float]:
        """How long each stretch of refused requests lasted (refusals closer than `gap`)."""
        windows: list[float] = []
        start = previous = None
        for moment in sorted(self.refusals):
            if previous is None or moment - previous > gap:
                if start is not None and previous is not None:
                    windows.append(previous - start + RETRY_PAUSE)
                start = moment
            previous = moment
        if start is not None and previous is not None:
            windows.append(previous - start + RETRY_PAUSE)
        return windows

    def in_flight_at(self, moments: Sequence[float]) -> int:
        """Complete downloads that were running at one of `moments` (a restart's SIGTERM)."""
        return sum(1 for start, end in self.downloads if any(start < t < end for t in moments))


class Load:
    """`clients` threads GETting `targets` in turn until stopped; use as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        targets: Sequence[Target],
        *,
        clients: int = 4,
        pause_per_chunk: float = 0.01,
        timeout: float = 60.0,
    ):
        self.host, self.port = host, port
        self.targets = list(targets)
        self.clients = clients
        self.pause_per_chunk = pause_per_chunk
        self.timeout = timeout
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 10)

    def count(self, outcome: str) -> int:
        with self._lock:
            return self.tally.outcomes[outcome]

    def _run(self) -> None:
        while not self._stop.is_set():
            for target in self.targets:
                start = time.monotonic()
                outcome, detail = self._get(target)
                with self._lock:
                    self.tally.outcomes[outcome] += 1
                    if outcome == "ok" and target.digest:
                        self.tally.downloads.append((start, time.monotonic()))
                    if outcome == "refused":
                        self.tally.refusals.append(start)
                    elif outcome != "ok":
                        self.tally.errors.append(f"{outcome}: {target.path}: {detail}")
                if outcome == "refused":
                    time.sleep(RETRY_PAUSE)

    def _get(self, target: Target) -> tuple[str, str]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            try:
                headers = {"Connection": "close", "Accept": target.accept}
                connection.request("GET", target.path, headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as e:
                return "refused", repr(e)
            if response.status != 200:
                return "failed", f"HTTP {response.status}"
            try:
                digest = hashlib.sha256()
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    # Pacing, not synchronisation: keeps downloads in flight for a while.
                    time.sleep(self.pause_per_chunk)
            except (OSError, http.client.HTTPException) as e:
                return "cut", repr(e)
            if target.digest and f"sha256:{digest.hexdigest()}" != target.digest:
                return "cut", "body does not match its digest"
            return "ok", ""
        finally:
            connection.close()
