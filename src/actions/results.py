"""Action results Juju can take, whatever the registry holds.

ops hands each result to `action-set` as one command-line argument, and
Linux refuses an argument over 128 KiB (MAX_ARG_STRLEN: E2BIG, "Argument
list too long") after the action has done all its work. Lists that grow
with the registry (images, rmi) are therefore cut to a budget; the results
say how many lines they show of how many, and the whole list goes to a file
on the unit, readable by root only, whose path they name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LIST_BUDGET = 64 * 1024
"""Bytes of one list result: half the argument limit, leaving room for the rest."""
RESULTS_DIR = "var/lib/docker-registry-charm/action-results"
"""Under the unit's root: where lists too long for the results are written."""
KEEP_FILES = 20
"""Files kept there: the newest; older ones go as new ones come (the folder is ours)."""


@dataclass(frozen=True)
class FittedList:
    """The lines of a list that fit the budget, joined, out of all of them."""

    text: str
    shown: int
    total: int

    @property
    def cut(self) -> bool:
        """Whether some lines were left out."""
        return self.shown < self.total


def fit_lines(lines: Sequence[str], budget: int = LIST_BUDGET) -> FittedList:
    """The first lines whose text (newline-joined, UTF-8) stays within `budget` bytes."""
    size = shown = 0
    for line in lines:
        size += len(line.encode()) + (1 if shown else 0)
        if size > budget:
            break
        shown += 1
    return FittedList("\n".join(lines[:shown]), shown, len(lines))


def write_list(root: Path, action: str, lines: Sequence[str]) -> Path:
    """Write every line to a new root-only file named after the action; its path."""
    folder = root / RESULTS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = folder / f"{action}-{stamp}-{os.getpid()}.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.writelines(f"{line}\n" for line in lines)
    for old in sorted(folder.glob("*.txt"), key=lambda p: p.stat().st_mtime)[:-KEEP_FILES]:
        old.unlink(missing_ok=True)
    return path


def list_results(
    key: str, lines: Sequence[str], *, root: Path, action: str, next_hint: str = ""
) -> dict[str, str | int]:
    """`key` holds the lines that fit; when cut, `<key>-cut` says how, `<key>-file` where all are.

    `next_hint` tells the operator how to see the lines left out (e.g. the
    next page's parameters); the file always holds every line.
    """
    fitted = fit_lines(lines)
    results: dict[str, str | int] = {key: fitted.text}
    if fitted.cut:
        path = write_list(root, action, lines)
        hint = f"; {next_hint}" if next_hint else ""
        results[f"{key}-cut"] = (
            f"showing the first {fitted.shown} of {fitted.total} lines"
            f" (results are limited to {LIST_BUDGET // 1024} KiB);"
            f" all {fitted.total} are in {path} on the unit{hint}"
        )
        results[f"{key}-file"] = str(path)
    return results
