"""Process plumbing shared by the helpers: bounded commands and daemons killed by group."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .wait import WaitTimeoutError, wait_for

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_COMMAND_TIMEOUT = 60.0


class CommandError(RuntimeError):
    """A helper command failed or timed out; carries its output for the test report."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(
            f"{' '.join(self.argv)} {status}\n--- stderr ---\n{stderr.strip()}"
            f"\n--- stdout ---\n{stdout.strip()}"
        )


def run(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_COMMAND_TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a hard timeout; raise `CommandError` with its output on failure."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, None, _text(exc.stdout), _text(exc.stderr)) from exc
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def run_bytes(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_COMMAND_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Like `run` but keeps stdout as bytes (for digests over exact output)."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, None, _text(exc.stdout), _text(exc.stderr)) from exc
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, _text(proc.stdout), _text(proc.stderr))
    return proc


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


class ManagedProcess:
    """A long-running child in its own process group, logged to a file, always reaped.

    Stopping signals the whole group, so helpers a daemon forks die with it. Anything still
    running at interpreter exit is killed as a last resort.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ):
        self.argv = list(argv)
        self.name = name
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self._cwd,
            start_new_session=True,
        )
        _LIVE.add(self)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self) -> None:
        """Raise with the log tail if the process has exited, to fail waits fast."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        rc = self._proc.poll()
        if rc is not None:
            raise RuntimeError(f"{self.name} exited early with {rc}; log:\n{self.log_tail()}")

    def log_tail(self, limit: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "<no log>"
        return data[-limit:].decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process group, escalate to SIGKILL, and reap; safe to call twice."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(WaitTimeoutError):
                wait_for(
                    lambda: _exited_unreaped(proc.pid),
                    timeout=timeout,
                    interval=0.05,
                    what=f"{self.name} (pid {proc.pid}) to exit after SIGTERM",
                )
            # The leader is not reaped yet, so its pid (= group id) cannot have been reused:
            # killing the group now only hits stragglers we started.
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)


def _exited_unreaped(pid: int) -> bool:
    """Whether a child has exited, without reaping it (keeps its pid reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def owned_tempdir(owner: object, prefix: str, base: str | None = None) -> Path:
    """A temp dir removed when `owner` is garbage-collected or at exit, as a safety net.

    Helpers still delete it in `stop()`; this covers objects that were never started/stopped.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    weakref.finalize(owner, shutil.rmtree, path, ignore_errors=True)
    return path


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.stop(timeout=2.0)


class ServerFixture:
    """The life cycle shared by the servers tests start: a process and a work dir.

    Subclasses set `_proc` when they start and `workdir`/`_own_workdir` when
    they are made; `stop()` ends the process and removes a work dir it made.
    """

    _proc: ManagedProcess | None
    workdir: Path
    _own_workdir: bool

    def start(self) -> Self:
        raise NotImplementedError

    def log_tail(self, limit: int = 4000) -> str:
        return self._proc.log_tail(limit) if self._proc else ""

    @property
    def pid(self) -> int | None:
        """The server's process (and process group), while it runs."""
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
