"""One writer per output: a host-wide advisory lock on each output path a command writes.

Two processes given the same ``--out`` used to race, the last one winning. Now the second is
refused with one line naming the first. The lock is an ``flock`` on a file in the temp folder
named after the output's absolute path (nothing is written beside the output); the kernel
drops it when the holder exits, however it exits, so a killed writer never leaves a stale lock.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with output_lock(out):
    ...     with output_lock(out):  # a second writer of the same output
    ...         pass  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: ... is being written by another edgepress process (pid ...)...
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of output ``out`` (the same for every spelling of the same path)."""
    key = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"edgepress-out-{os.getuid()}-{key}.lock"


@contextlib.contextmanager
def output_lock(out: str | os.PathLike, *, hint: str = "") -> Iterator[None]:
    """Hold the writer lock of ``out`` for the block.

    Raises:
        InputError: another process holds it (its pid named; ``hint`` appended).
    """
    path = lock_path(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(f"{str(out)!r} is being written by another edgepress process "
                             f"(pid {holder}): wait for it, or give another --out{hint}"
                             ) from None
        try:  # the file may have been unlinked by a holder that just released it: retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
