"""Writes the NRPE check and Nagios service files that `state/nagios.py` decides.

Owned by root, mode 0644 as the established charm left them: the nrpe daemon
(user nagios) reads them, and they hold no secret. The folders belong to the
nrpe subordinate: a file whose folder is not there yet is written in a later
hook, once the subordinate has made it. Only files this charm wrote (the
caller keeps the list) are ever replaced or removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

logger = logging.getLogger(__name__)

MODE = 0o644


def apply_nagios_files(
    files: Mapping[Path, str], written: Iterable[Path]
) -> tuple[set[Path], bool]:
    """Write `files`, remove those in `written` no longer wanted.

    Returns the files now written (the next call's `written`) and whether any
    changed, so that the nrpe unit is told only then.
    """
    changed = False
    for path in set(written) - set(files):
        if path.is_file():
            path.unlink()
            changed = True
    now_written: set[Path] = set()
    for path, content in files.items():
        if not path.parent.is_dir():
            logger.info("%s is not there yet (the nrpe subordinate makes it)", path.parent)
            continue
        now_written.add(path)
        if path.is_file() and path.read_bytes() == content.encode():
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MODE)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(tmp, MODE)
        os.replace(tmp, path)
        changed = True
    return now_written, changed
