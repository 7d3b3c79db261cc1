"""Model bundles: round trip, checksum, and refusal of anything that does not fit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_forecaster.model.bundle import (
    BundleChecksumError,
    BundleError,
    ModelBundle,
    TrainingInfo,
    resolve_bundle,
)
from stream_forecaster.model.scaling import Scaling
from stream_forecaster.model.untrained import untrained_bundle

FEATURES = ("pm2.5", "DEWP", "TEMP", "PRES", "cbwd", "Iws", "Is", "Ir")


def make_bundle(window: int = 24, created_at: str = "2026-01-02T03:04:05Z") -> ModelBundle:
    weights = untrained_bundle(FEATURES, window).weights
    scaling = Scaling(
        feature_mean=tuple(float(i) for i in range(8)),
        feature_std=tuple(1.0 + i for i in range(8)),
        target_mean=0.5,
        target_std=20.0,
    )
    info = TrainingInfo(created_at=created_at, source="unit-test", metrics={"val_mae": 1.5})
    return ModelBundle.from_weights(
        weights,
        features=FEATURES,
        target="pm2.5",
        window=window,
        scaling=scaling,
        training=info,
        categories={"cbwd": ("NE", "NW", "SE", "cv")},
    )


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return make_bundle()


@pytest.fixture(scope="module")
def bundle_bytes(bundle: ModelBundle) -> bytes:
    return bundle.to_bytes()


@pytest.mark.slow
def test_round_trip_keeps_manifest_weights_and_predictions(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    path = bundle.save(tmp_path / "m.sfmodel")
    loaded = ModelBundle.load(path)

    assert loaded.manifest == bundle.manifest
    assert len(loaded.weights) == len(bundle.weights) == 5
    for a, b in zip(loaded.weights, bundle.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(3, 24, 8)).astype(np.float32)
    np.testing.assert_allclose(
        loaded.build_model()(x, training=False).numpy(),
        bundle.build_model()(x, training=False).numpy(),
        rtol=0,
        atol=0,
    )


def test_manifest_carries_what_serving_needs(bundle: ModelBundle) -> None:
    m = bundle.manifest
    assert m.features == FEATURES
    assert m.target == "pm2.5"
    assert m.window == 24
    assert m.categories == {"cbwd": ("NE", "NW", "SE", "cv")}
    assert m.scaling.target_std == 20.0
    assert m.training.metrics == {"val_mae": 1.5}
    assert m.version.startswith("20260102T030405Z-")


def test_header_records_sha256_of_the_contents(bundle_bytes: bytes) -> None:
    header, _, payload = bundle_bytes.partition(b"\n")
    assert header == b"SFBUNDLE/1 sha256=" + hashlib.sha256(payload).hexdigest().encode()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_changed_byte_after_the_header_fails_the_checksum(
    bundle_bytes: bytes, data: st.DataObject
) -> None:
    header_len = bundle_bytes.index(b"\n") + 1
    position = data.draw(st.integers(header_len, len(bundle_bytes) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(bundle_bytes)
    damaged[position] ^= flip

    with pytest.raises(BundleChecksumError, match="failed its checksum"):
        ModelBundle.from_bytes(bytes(damaged))


def test_a_changed_recorded_digest_fails_the_checksum(bundle_bytes: bytes) -> None:
    damaged = bytearray(bundle_bytes)
    position = bundle_bytes.index(b"sha256=") + 7
    damaged[position] = ord("0") if damaged[position] != ord("0") else ord("1")

    with pytest.raises(BundleChecksumError):
        ModelBundle.from_bytes(bytes(damaged))


def test_one_byte_changed_in_a_file_fails_to_load(bundle: ModelBundle, tmp_path: Path) -> None:
    path = bundle.save(tmp_path / "m.sfmodel")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(BundleChecksumError, match=r"m\.sfmodel failed its checksum"):
        ModelBundle.load(path)


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04not a bundle", b"SFBUNDLE/1 sha256=abc\n{}"])
def test_not_a_bundle_is_refused(data: bytes) -> None:
    with pytest.raises(BundleError, match="not a stream-forecaster bundle"):
        ModelBundle.from_bytes(data)


def test_weights_that_do_not_fit_the_architecture_are_refused(bundle: ModelBundle) -> None:
    bad = ModelBundle(manifest=bundle.manifest, weights=bundle.weights[:-1])
    with pytest.raises(BundleError, match="expected arrays"):
        ModelBundle.from_bytes(bad.to_bytes())


def test_pickled_arrays_are_never_loaded(bundle: ModelBundle) -> None:
    """An object array in the weights archive would need pickle: refused, not executed."""
    import hashlib as h
    import io

    buffer = io.BytesIO()
    np.savez(buffer, w000=np.array([object()], dtype=object), allow_pickle=True)
    payload = bundle.manifest.model_dump_json().encode() + b"\n" + buffer.getvalue()
    data = b"SFBUNDLE/1 sha256=" + h.sha256(payload).hexdigest().encode() + b"\n" + payload

    with pytest.raises(BundleError, match="cannot read the weights"):
        ModelBundle.from_bytes(data)


def test_save_into_a_folder_and_resolve_the_newest(tmp_path: Path) -> None:
    older = make_bundle(created_at="2026-01-01T00:00:00Z").save(tmp_path)
    newer = make_bundle(created_at="2026-02-01T00:00:00Z").save(tmp_path)

    assert older.parent == newer.parent == tmp_path
    assert resolve_bundle(tmp_path) == newer
    assert ModelBundle.load(tmp_path).version == newer.stem
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_bundle_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        ModelBundle.load(tmp_path / "nope.sfmodel")
    with pytest.raises(BundleError, match="no model bundle"):
        ModelBundle.load(tmp_path)
