"""What a unit's files look like: content and mode of each, to compare before and after."""

from __future__ import annotations

from pathlib import Path

Snapshot = dict[str, tuple[bytes, int]]


def snapshot(root: Path) -> Snapshot:
    """Every regular file under `root` (logs aside): its bytes and mode."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mode & 0o7777)
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and "var/log" not in str(path)
    }
