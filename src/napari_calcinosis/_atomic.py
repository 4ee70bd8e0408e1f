"""Write files atomically: the final path holds the old file or the whole new one, never half.

A training run killed mid-write (kill -9, a power cut, a full disk) must not leave a truncated
model or checkpoint where the next run or the user looks for it. The new content is written to
a hidden temporary file in the same folder (a rename is atomic only within one file system),
flushed to disk, then renamed over the final path with :func:`os.replace`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import time
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_file", "atomic_write", "remove_stale_temporaries", "temporary_path"]


def temporary_path(path) -> Path:
    """A unique hidden file name beside ``path`` that keeps its suffix.

    The suffix is kept because writers such as imageio and tifffile choose the format from it.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def _fsync(fd: int) -> None:
    """fsync, except where the file system cannot (some network and FUSE mounts say so)."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.ENOSYS, errno.EBADF):
            raise


def _writer_alive(tmp: Path, path: Path) -> bool:
    """Whether another process on this machine that may still be writing ``tmp`` is running
    (its id is in the name, see :func:`temporary_path`). A name that does not parse, or a file a
    day old, counts as left behind: process ids are reused."""
    head = f".{path.stem}.tmp-"
    try:
        pid = int(tmp.name[len(head):].split("-", 1)[0])
        age_s = time.time() - tmp.stat().st_mtime
    except (ValueError, OSError):
        return False
    if pid == os.getpid() or pid <= 0 or age_s > 86400:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, another user's
        return True
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Delete the temporary files a killed writer left beside ``path``; returns what went.

    Call it before writing ``path`` again. A temporary file of another process still running
    (a second training run writing the same model, say) is left alone: deleting it would make
    that process's rename fail.
    """
    path = Path(path)
    pattern = f".{glob.escape(path.stem)}.tmp-*{glob.escape(path.suffix)}"
    stale = [p for p in path.parent.glob(pattern) if p.is_file() and not _writer_alive(p, path)]
    for p in stale:
        with contextlib.suppress(OSError):
            p.unlink()
    return stale


@contextlib.contextmanager
def atomic_file(path, *, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends, flush it and rename it onto ``path``.

    If the block raises (or is interrupted), ``path`` is left as it was and the temporary file
    is removed. With ``make_parents`` the folder is created first.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        # Flushed before the rename, so that after a crash the name never points at a file
        # whose data had not reached the disk yet.
        with open(tmp, "r+b") as handle:
            _fsync(handle.fileno())
        os.replace(tmp, path)
        # The rename itself reaches the disk with the folder's entry.
        with contextlib.suppress(OSError):
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                _fsync(folder)
            finally:
                os.close(folder)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write(path, write_fn: Callable[[Path], object]) -> Path:
    """Create ``path`` through ``write_fn(temporary_path)``, then rename it into place.

    Parameters
    ----------
    path : str or Path
        The final file; its folder is created if needed. An existing file is replaced only
        once the new one is complete.
    write_fn : callable
        Writes the whole file to the path it is given (e.g. ``lambda p: p.write_text(text)``,
        ``lambda p: torch.save(state, p)``).

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_file(path) as tmp:
        write_fn(tmp)
    return Path(path)
