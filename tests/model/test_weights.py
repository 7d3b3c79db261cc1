"""Bounded loading: a bundle whose weights would unpack to more than they need is refused
before it is unpacked, with the memory it would have taken never spent."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from numpy.lib import format as npy

from stream_forecaster.model.bundle import BundleError, BundleTooLarge, ModelBundle
from stream_forecaster.model.weights import MAX_BUNDLE_BYTES, WeightsError, read_weights
from tests.harness.bundles import archive_of, bundle_bytes, members_of, npy_bytes, untrained_bundle


@pytest.fixture(scope="module")
def good() -> ModelBundle:
    return untrained_bundle()


def test_a_zip_bomb_is_refused_before_it_is_unpacked(good: ModelBundle) -> None:
    members = members_of(good)
    members["w001.npy"] = npy_bytes(np.zeros(60_000_000, dtype=np.float32))  # 240 MB unpacked
    data = bundle_bytes(good.manifest.model_dump_json().encode(), archive_of(members))
    assert len(data) < 1_000_000  # it compresses to well under a megabyte

    tracemalloc.start()
    try:
        with pytest.raises(BundleTooLarge, match=r"w001\.npy unpacks to 240000128 bytes") as info:
            ModelBundle.from_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == "oversized"
    assert peak < 2 * len(data) + 1_000_000  # never the 240 MB it asks for


def test_an_array_header_claiming_another_shape_is_refused_unread(good: ModelBundle) -> None:
    members = members_of(good)
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**9,)})
    members["w002.npy"] = header.getvalue()  # a header promising 4 GB, and no data
    data = bundle_bytes(good.manifest.model_dump_json().encode(), archive_of(members))
    with pytest.raises(BundleError, match=r"w002.npy: expected float32 of shape \(200,\)"):
        ModelBundle.from_bytes(data)


def test_shapes_implying_huge_weights_are_refused(good: ModelBundle) -> None:
    huge = [(100_000, 200), (50, 200), (200,), (50, 1), (1,)]  # 100,000 features
    with pytest.raises(WeightsError, match="more than the 67108864 allowed") as info:
        read_weights(archive_of(members_of(good)), huge)
    assert info.value.oversized


def test_a_bundle_over_the_record_cap_is_refused_unparsed() -> None:
    with pytest.raises(BundleTooLarge, match=f"more than the {MAX_BUNDLE_BYTES} allowed"):
        ModelBundle.from_bytes(b"SFBUNDLE/1" + b"\0" * MAX_BUNDLE_BYTES)


def test_a_good_bundle_still_loads_bit_for_bit(good: ModelBundle) -> None:
    loaded = ModelBundle.from_bytes(good.to_bytes())
    assert all(np.array_equal(a, b) for a, b in zip(loaded.weights, good.weights, strict=True))
    assert all(w.flags.writeable and w.dtype == np.float32 for w in loaded.weights)
