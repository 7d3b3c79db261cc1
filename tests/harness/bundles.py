"""Model bundles for tests: untrained (fast, deterministic, no TensorFlow) with realistic
scaling."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
from numpy.lib import format as npy

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.model.calendar import CalendarInput
from stream_forecaster.model.untrained import untrained_bundle as _untrained

FEATURES = ("t", "rh", "p")


def untrained_bundle(
    features: tuple[str, ...] = FEATURES,
    window: int = 4,
    seed: int = 7,
    created_at: str = "2026-01-01T00:00:00Z",
    name: str = "test",
    calendar: tuple[CalendarInput, ...] = (),
) -> ModelBundle:
    """A bundle with seeded random weights; target = the first feature."""
    return _untrained(
        features, window, seed=seed, created_at=created_at, name=name, calendar=calendar
    )


# -- hand-made bundle bytes, for what a bundle must not be -------------------------------


def bundle_bytes(manifest_json: bytes, archive: bytes) -> bytes:
    payload = manifest_json + b"\n" + archive
    return b"SFBUNDLE/1 sha256=" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def archive_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    npy.write_array(buffer, array)
    return buffer.getvalue()


def members_of(bundle: ModelBundle) -> dict[str, bytes]:
    return {f"w{i:03d}.npy": npy_bytes(w) for i, w in enumerate(bundle.weights)}
