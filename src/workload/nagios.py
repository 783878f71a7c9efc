"""Writes the NRPE check and Nagios service files that `state/nagios.py` decides.

Owned by root, mode 0644 as the established charm left them: the nrpe daemon
(user nagios) reads them, and they hold no secret. The folders belong to the
nrpe subordinate: a file whose folder is not there yet is written in a later
hook, once the subordinate has made it. Only files this charm wrote (the
caller keeps the list) are ever replaced or removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from workload.files import write_if_changed

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
        changed |= write_if_changed(path, content, MODE)
    return now_written, changed
