"""One builder per key, whoever asks: an exclusive lock file per key under the store's ``.locks/``.

Two builds of one workspace (or luigi's workers, or luigid's) that reach the same step take the
key's lock; the second waits, then finds the target published and uses it. The locks are
``flock`` locks: the kernel drops them when their process dies (even by kill -9), so a lock left by a
killed build is never stale. The holder removes the file before it lets go; a waiter that then holds
a lock on a removed file notices (the path no longer names its file) and takes the lock again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

LOCKS = ".locks"


@contextlib.contextmanager
def key_lock(root: str | os.PathLike[str], key: str, *, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the lock of ``key`` for the block; yields whether another process held it first (we waited).

    Args:
        root: the store's folder.
        on_wait: called once, before waiting, when another process holds the lock.
    """
    folder = os.path.join(root, LOCKS)
    path = os.path.join(folder, f"{key}.lock")
    waited = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            Path(folder).mkdir(parents=True, exist_ok=True)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C still interrupts the wait
            if _same_file(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder removed it as we got it: lock the file that is there now
    try:
        yield waited
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)
