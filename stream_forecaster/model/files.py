"""Reading from the model folder: regular files only (a FIFO or a device there cannot
block or flood the reader), each read bounded, and names from ``registry.json`` kept
inside the folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from stream_forecaster.model.bundle import BundleError, BundleTooLarge


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, a regular file (symbolic links followed) of at most ``limit``
    bytes.

    Raises:
        BundleTooLarge: it is larger than ``limit``; nothing is read.
        BundleError: it is missing, unreadable, or not a regular file (nothing is read).
    """
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{path} is not a regular file; only regular files are read")
        if info.st_size > limit:
            raise BundleTooLarge(f"{path} has {info.st_size} bytes, more than the {limit} allowed")
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew meanwhile
        raise BundleTooLarge(f"{path} has more than the {limit} bytes allowed")
    return data


class UnsafeName(BundleError):
    """``registry.json`` names a file with a directory part, or outside the folder."""


def inside(folder: Path, name: str) -> Path:
    """``folder / name`` for a plain file name (as ``registry.json`` records them).

    Raises:
        UnsafeName: ``name`` has a directory part, or leads out of the folder.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise UnsafeName(
            f"{folder / 'registry.json'} names the file {name!r}; expected a file name in "
            f"{folder}, without a directory part"
        )
    return folder / name
