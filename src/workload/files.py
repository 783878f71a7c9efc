"""Writing a root-owned file only when its content changes, replaced in one step."""

from __future__ import annotations

import os
from pathlib import Path


def write_if_changed(path: Path, content: str, mode: int = 0o644) -> bool:
    """Write `content` to `path` (a temporary file renamed over it); whether it changed."""
    if path.is_file() and path.read_bytes() == content.encode():
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True
