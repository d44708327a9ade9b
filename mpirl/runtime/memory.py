"""Memory that must be there from the start: how much this process may still take (what the
node has available, capped by the memory limit of its control group: SLURM's ``--mem``, a
container's limit), and arrays that hold theirs at once."""
from __future__ import annotations

from pathlib import Path

import numpy as np

_CGROUP = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_room() -> list[int]:
    """Limit minus usage of this process's memory control group (v2 or v1), if it has one."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    room = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            candidates = [(_CGROUP / path.lstrip("/"), "memory.max", "memory.current"),
                          (_CGROUP, "memory.max", "memory.current")]
        elif "memory" in controllers.split(","):  # v1
            base = _CGROUP / "memory"
            candidates = [(base / path.lstrip("/"), "memory.limit_in_bytes",
                           "memory.usage_in_bytes"),
                          (base, "memory.limit_in_bytes", "memory.usage_in_bytes")]
        else:
            continue
        for directory, limit_file, usage_file in candidates:
            limit = _read_int(directory / limit_file)
            usage = _read_int(directory / usage_file)
            if limit is not None and usage is not None:
                if limit < 1 << 60:  # v1 writes "no limit" as a huge number
                    room.append(max(limit - usage, 0))
                break
    return room


def available_bytes() -> int | None:
    """Bytes this process can still allocate without swapping or being killed, or None when
    the system does not say (not Linux)."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    available = None
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
    if available is None:
        return None
    return min([available, *_cgroup_room()])


def resident_zeros(shape, dtype) -> np.ndarray:
    """Zeros whose memory is resident now. ``np.zeros`` maps pages lazily, so a replay too
    big for the node's memory (or the job's limit) would fail hours later, as it fills;
    writing every page makes it fail at start-up."""
    out = np.empty(shape, dtype=dtype)
    out.fill(0)
    return out
