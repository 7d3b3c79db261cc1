"""Reading a bundle's weights with bounded memory: the ``.npz`` archive's members, their
unpacked sizes and each array's header are checked against the shapes the manifest implies
before a byte of data is unpacked, so a small archive that inflates (a zip bomb, or an
array header claiming a huge shape) is refused without the memory it asks for."""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npy

#: The most bytes a bundle (file or record) may have.
MAX_BUNDLE_BYTES: Final = 16 * 1024 * 1024
#: The most bytes its weights may unpack to (the seed network with ~20,000 features).
MAX_WEIGHT_BYTES: Final = 64 * 1024 * 1024
_NPY_HEADER_MAX: Final = 4096  # an .npy header is padded to a multiple of 64 bytes
_FLOAT32: Final = np.dtype("<f4")


class WeightsError(ValueError):
    """The archive does not hold the expected arrays.

    Attributes:
        oversized: it is refused for its size (else for its contents).
    """

    def __init__(self, message: str, *, oversized: bool = False) -> None:
        super().__init__(message)
        self.oversized = oversized


def read_weights(
    archive: bytes, shapes: Sequence[tuple[int, ...]]
) -> tuple[npt.NDArray[np.float32], ...]:
    """The float32 arrays ``w000.npy, w001.npy, ...`` of an ``.npz`` archive, each of the
    shape given.

    Raises:
        WeightsError: other members, another shape or type, or more bytes than the shapes
            need (``oversized``).
    """
    needed = [4 * math.prod(shape) for shape in shapes]
    if sum(needed) > MAX_WEIGHT_BYTES:
        raise WeightsError(
            f"the manifest implies {sum(needed)} bytes of weights, more than the "
            f"{MAX_WEIGHT_BYTES} allowed",
            oversized=True,
        )
    names = [f"w{i:03d}.npy" for i in range(len(shapes))]
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as members:
            infos = sorted(members.infolist(), key=lambda info: info.filename)
            found = [info.filename for info in infos]
            if found != names:
                raise WeightsError(f"expected arrays {names}, got {found[:10]}")
            return tuple(
                _read_one(members, info, shape, size)
                for info, shape, size in zip(infos, shapes, needed, strict=True)
            )
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise WeightsError(f"not a readable .npz archive: {exc}") from None


def _read_one(
    members: zipfile.ZipFile, info: zipfile.ZipInfo, shape: tuple[int, ...], size: int
) -> npt.NDArray[np.float32]:
    if info.file_size > size + _NPY_HEADER_MAX:
        raise WeightsError(
            f"{info.filename} unpacks to {info.file_size} bytes; shape {shape} needs {size}",
            oversized=True,
        )
    with members.open(info) as member:
        try:
            version = npy.read_magic(member)
            if version == (1, 0):
                header = npy.read_array_header_1_0(member)
            else:
                header = npy.read_array_header_2_0(member)
        except ValueError as exc:
            raise WeightsError(f"{info.filename}: not an .npy array ({exc})") from None
        got_shape, fortran, dtype = header
        if tuple(got_shape) != shape or dtype != _FLOAT32:
            raise WeightsError(
                f"{info.filename}: expected float32 of shape {shape}, got {dtype} of shape "
                f"{tuple(got_shape)}"
            )
        data = member.read(size + 1)  # one more: a longer member is refused, not cut
    if len(data) != size:
        raise WeightsError(f"{info.filename}: expected {size} bytes of data, got {len(data)}")
    array = np.frombuffer(data, dtype=_FLOAT32).reshape(shape, order="F" if fortran else "C")
    return array.astype(np.float32)  # a writable copy in native order
