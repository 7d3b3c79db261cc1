"""Window snapshots: a key's whole window state as bytes, loaded back bit for bit. The
changelog that lets windows survive restarts and rebalances is made of these.

Layout, little-endian::

    b"SFW1"  window:u32  n_features:u32
    head:i64  rows:i64  last_nan_row:i64  newest_ts:i64  n_steps:i64  steps:8*i64
    values: window*n_features float32, in ring-buffer order
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from stream_forecaster.state.window_slots import STEPS_KEPT

#: The first bytes of every snapshot.
MAGIC: Final = b"SFW1"
#: The fixed part of a snapshot, before the values.
HEADER: Final = struct.Struct(f"<4sII5q{STEPS_KEPT}q")


class SnapshotError(ValueError):
    """A window snapshot that cannot be loaded: damaged, or for another window shape."""


class SnapshotFields(NamedTuple):
    """What a snapshot holds of one key (arrays: one entry per key when encoding)."""

    head: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]
    last_nan_row: npt.NDArray[np.int64]
    newest_ts: npt.NDArray[np.int64]
    n_steps: npt.NDArray[np.int64]
    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]


class SnapshotCodec:
    """Encodes and decodes the snapshots of windows of one shape.

    Args:
        window: readings per window.
        n_features: features per reading.
    """

    def __init__(self, window: int, n_features: int) -> None:
        self.window = window
        self.n_features = n_features
        self.size = HEADER.size + window * n_features * 4
        # The layout as a numpy record, to encode many snapshots in one pass.
        self._layout = np.dtype(
            [
                ("magic", "S4"),
                ("window", "<u4"),
                ("n_features", "<u4"),
                ("head", "<i8"),
                ("rows", "<i8"),
                ("last_nan_row", "<i8"),
                ("newest_ts", "<i8"),
                ("n_steps", "<i8"),
                ("steps", "<i8", (STEPS_KEPT,)),
                ("values", "<f4", (window, n_features)),
            ]
        )

    def encode(self, fields: SnapshotFields) -> list[bytes]:
        """One snapshot per entry of ``fields`` (arrays of the same length)."""
        out = np.empty(len(fields.head), dtype=self._layout)
        out["magic"] = MAGIC
        out["window"] = self.window
        out["n_features"] = self.n_features
        for name, value in fields._asdict().items():
            out[name] = value
        data, size = out.tobytes(), self._layout.itemsize
        return [data[i : i + size] for i in range(0, len(data), size)]

    def decode(self, key: str, data: bytes) -> SnapshotFields:
        """The fields of one snapshot (scalars as 0-d arrays).

        Raises:
            SnapshotError: the bytes are not a snapshot of this window shape.
        """
        if len(data) != self.size or not data.startswith(MAGIC):
            raise SnapshotError(
                f"expected a {self.size}-byte window snapshot for {key!r}, got {len(data)} bytes"
                + ("" if data.startswith(MAGIC) else " without the SFW1 header")
            )
        _magic, window, n_features, head, rows, last_nan, newest, n_steps, *steps = (
            HEADER.unpack_from(data)
        )
        if (window, n_features) != (self.window, self.n_features):
            raise SnapshotError(
                f"snapshot of {key!r} holds a {window}x{n_features} window; "
                f"expected {self.window}x{self.n_features}"
            )
        values = np.frombuffer(data, np.float32, offset=HEADER.size)
        scalar = np.asarray
        return SnapshotFields(
            scalar(head, dtype=np.int64),
            scalar(rows, dtype=np.int64),
            scalar(last_nan, dtype=np.int64),
            scalar(newest, dtype=np.int64),
            scalar(n_steps, dtype=np.int64),
            np.asarray(steps, dtype=np.int64),
            values.reshape(self.window, self.n_features),
        )
