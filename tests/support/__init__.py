"""Helpers for end-to-end tests that drive real registries, skopeo, containerd and haproxy.

Everything here binds to loopback only, bounds every wait and subprocess in time, and cleans up
the processes it starts, so tests stay hermetic on a machine without network access.
"""

from ._proc import CommandError
from .wait import WaitTimeoutError

__all__ = ["CommandError", "WaitTimeoutError"]
