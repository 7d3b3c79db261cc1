"""Reading the model folder: regular files only, bounded, names kept inside the folder."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from stream_forecaster.model.bundle import BundleError, BundleTooLarge
from stream_forecaster.model.files import inside, read_regular_file


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.sfmodel"
    os.mkfifo(fifo)
    done = threading.Event()
    failure: list[BaseException] = []

    def read() -> None:
        try:
            read_regular_file(fifo, 1024)
        except BundleError as exc:
            failure.append(exc)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout=30), "reading a FIFO blocked"
    assert "is not a regular file" in str(failure[0])


def test_a_device_is_refused_and_a_large_file_is_not_read(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="/dev/zero is not a regular file"):
        read_regular_file(Path("/dev/zero"), 1024)
    big = tmp_path / "big.sfmodel"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(BundleTooLarge, match="has 2048 bytes, more than the 1024 allowed"):
        read_regular_file(big, 1024)


def test_a_link_to_a_regular_file_is_read(tmp_path: Path) -> None:
    target = tmp_path / "real.sfmodel"
    target.write_bytes(b"bundle")
    link = tmp_path / "current.sfmodel"
    link.symlink_to(target)  # as Kubernetes mounts ConfigMaps and Secrets
    assert read_regular_file(link, 1024) == b"bundle"


@pytest.mark.parametrize("name", ["../outside.sfmodel", "/dev/zero", "sub/x.sfmodel", "..", ""])
def test_registry_file_names_stay_inside_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(BundleError, match="expected a file name in"):
        inside(tmp_path, name)
    assert inside(tmp_path, "v1.sfmodel") == tmp_path / "v1.sfmodel"
