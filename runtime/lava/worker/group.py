"""The processes of one Lava run and the shared memory they hold, for both sides of the worker
boundary: the core's sandbox stops the run's process group and releases its segments when the run
ends; the worker does the same itself when spikeport is gone (killed by SIGKILL, which no handler
of spikeport's sees). Standard library only.

Lava's channels are Python SharedMemory segments in /dev/shm, which a killed run never unlinks.
Only the segments that members of the run's group map are touched, never another program's.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SHARED_MEMORY = Path("/dev/shm")  # Python's SharedMemory segments, psm_*: Lava's channels


def group_segments(group: int) -> set[str]:
    """The SharedMemory segments (/dev/shm/psm_*) that members of process group `group` map."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            maps = Path(entry.path, "maps").read_text()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)
            path = Path(fields[5]) if len(fields) == 6 else None
            if path and path.parent == SHARED_MEMORY and path.name.startswith("psm_"):
                found.add(path.name)  # an unlinked one reads "psm_x (deleted)": not a name any more
    return found


def release(segments: set[str]) -> None:
    """Unlink what is left of `segments` (a run that ended cleanly unlinked its own)."""
    for name in sorted(segments):
        with contextlib.suppress(OSError):
            (SHARED_MEMORY / name).unlink()
