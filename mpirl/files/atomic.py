"""The one place that writes run files: whole files through a temporary file that never
outlives a failed write, and the error that stops a run when its disk is full."""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(RuntimeError):
    """A run file could not be written for lack of space (or quota): the run cannot go on."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(f"no space left to write {path} ({error.strerror})")
        self.path = path


@contextlib.contextmanager
def space_needed(path: Path) -> Iterator[None]:
    """Turn a full disk or quota while writing ``path`` into DiskFull."""
    try:
        yield
    except OSError as e:
        if e.errno in NO_SPACE:
            raise DiskFull(path, e) from None
        raise


def write_atomically(path: Path, write: Callable[[BinaryIO], object] | bytes) -> None:
    """Write ``path`` whole (``write`` is the content, or a function that writes it to a
    file): into a temporary file, fsync, rename over ``path``, fsync the directory. A reader
    sees the old file or the whole new one, also after a crash; a failed write removes its
    temporary file, and a full disk raises DiskFull."""
    tmp = path.with_name(f".{path.name}.tmp")
    with space_needed(path):
        try:
            with open(tmp, "wb") as f:
                if isinstance(write, bytes):
                    f.write(write)
                else:
                    write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
