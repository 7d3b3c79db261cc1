"""The registry folder (bundles + registry.json) and what serve loads from it."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from stream_forecaster.model.bundle import BundleError, ModelBundle
from stream_forecaster.model.folder import ModelSource
from stream_forecaster.model.registry import (
    MANIFEST_NAME,
    Entry,
    Registry,
    RegistryError,
    current_file,
)
from stream_forecaster.settings import ModelSettings
from tests.harness.bundles import untrained_bundle
from tests.harness.signing import hmac_signature

SECRET = "registry-test-secret"


@pytest.fixture(scope="module")
def bundles() -> list[ModelBundle]:
    """Four distinct versions, oldest first (their ids sort by creation time)."""
    return [untrained_bundle(seed=s, created_at=f"2026-01-0{s}T00:00:00Z") for s in (1, 2, 3, 4)]


def same(a: ModelBundle, b: ModelBundle) -> bool:
    return a.manifest == b.manifest and all(
        np.array_equal(x, y) for x, y in zip(a.weights, b.weights, strict=True)
    )


# -- the registry ------------------------------------------------------------------------------


def test_add_writes_the_bundle_and_a_manifest_listing_it(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path / "models")  # created on the first write
    figures = {"holdout_mae": 1.25, "current_mae": 1.5, "persistence_mae": 2.0}
    entry = registry.add(bundles[0], status="candidate", metrics=figures, signature="ab" * 32)

    assert entry == Entry(
        version=bundles[0].version,
        file=f"{bundles[0].version}.sfmodel",
        created_at="2026-01-01T00:00:00Z",
        name="test",
        status="candidate",
        metrics=figures,
        signature="ab" * 32,
    )
    folder = tmp_path / "models"
    assert (folder / entry.file).read_bytes() == bundles[0].to_bytes()
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["current"] is None
    assert manifest["history"] == []
    assert manifest["entries"][0]["metrics"] == figures
    assert registry.current() is None  # a candidate is not served
    # Nothing but the files themselves (and the lock) is left behind: no temporary files.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [entry.file, MANIFEST_NAME, "registry.lock"]
    )


def test_bundles_round_trip_and_the_registry_survives_reopening(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path)
    registry.add(bundles[0], status="promoted", metrics={"holdout_mae": 1.0})
    registry.add(bundles[1], status="rejected", reason="MAE 2.0 >= current 1.0")
    registry.add(bundles[2])

    reopened = Registry(tmp_path)
    assert [e.version for e in reopened.entries()] == [b.version for b in bundles[:3]]
    assert [e.status for e in reopened.entries()] == ["promoted", "rejected", "candidate"]
    assert reopened.entry(bundles[1].version).reason == "MAE 2.0 >= current 1.0"
    current = reopened.current()
    assert current is not None and current.version == bundles[0].version
    for bundle in bundles[:3]:
        assert same(reopened.load(bundle.version), bundle)
        assert reopened.bundle_bytes(bundle.version) == bundle.to_bytes()


def test_promote_and_rollback_follow_the_history(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path)
    v1, v2, v3, v4 = (b.version for b in bundles)
    for bundle in bundles:
        registry.add(bundle)
    registry.promote(v1)
    registry.promote(v2)
    registry.promote(v2)  # promoting the current version again changes nothing
    registry.promote(v3)
    assert registry.history() == [v1, v2, v3]
    assert registry.previous().version == v2

    assert registry.rollback().version == v2
    assert Registry(tmp_path).current() == registry.entry(v2)
    assert registry.history() == [v1, v2]
    assert registry.entry(v3).status == "promoted"  # it went live once; still listed

    assert registry.rollback().version == v1  # a second rollback goes one further back
    with pytest.raises(RegistryError, match=f"no previous version.*only {v1}"):
        registry.rollback()

    entry = registry.promote(v4, signature="cd" * 32)  # e.g. signed by `models promote`
    assert (entry.status, entry.signature) == ("promoted", "cd" * 32)
    assert registry.history() == [v1, v4]
    assert registry.rollback(signature="ef" * 32).version == v1
    assert registry.entry(v1).signature == "ef" * 32


def test_errors_name_what_was_asked_and_what_exists(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="is empty"):
        registry.rollback()
    with pytest.raises(RegistryError, match=r"no version 'nope'.*it holds: none"):
        registry.promote("nope")

    registry.add(bundles[0])
    registry.add(bundles[1], status="promoted")
    with pytest.raises(RegistryError) as caught:
        registry.promote("20990101T000000Z-deadbeef")
    message = str(caught.value)
    assert "20990101T000000Z-deadbeef" in message
    assert bundles[0].version in message and bundles[1].version in message
    with pytest.raises(RegistryError, match="already in the registry"):
        registry.add(bundles[1])
    with pytest.raises(RegistryError, match="no previous version"):
        registry.rollback()

    (tmp_path / f"{bundles[0].version}.sfmodel").unlink()
    with pytest.raises(BundleError, match=r"model bundle of version .*: cannot read"):
        registry.load(bundles[0].version)

    bundle_file = tmp_path / "single.sfmodel"
    bundles[0].save(bundle_file)
    with pytest.raises(RegistryError, match="needs a folder"):
        Registry(bundle_file)

    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(RegistryError, match="not a valid registry"):
        registry.entries()


def test_a_damaged_bundle_file_fails_its_checksum_on_load(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path)
    entry = registry.add(bundles[0], status="promoted")
    path = tmp_path / entry.file
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        registry.load(entry.version)


def test_a_folder_of_plain_bundle_files_reads_as_promoted_versions(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    """Deployments from before the registry: the newest file is current, as serve did."""
    bundles[1].save(tmp_path)
    bundles[0].save(tmp_path)
    (tmp_path / "zz-damaged.sfmodel").write_bytes(b"not a bundle")
    registry = Registry(tmp_path)
    assert not registry.has_manifest()
    assert [e.version for e in registry.entries()] == [bundles[0].version, bundles[1].version]
    assert registry.history() == [bundles[0].version, bundles[1].version]
    current = registry.current()
    assert current is not None and current.version == bundles[1].version
    assert not registry.has_manifest()  # reading writes nothing

    # The first write keeps them: a rollback can go back to a file from before.
    registry.add(bundles[2], status="promoted")
    assert registry.has_manifest()
    assert registry.history() == [b.version for b in bundles[:3]]
    assert registry.rollback().version == bundles[1].version


def test_writes_are_atomic_and_serialised(tmp_path: Path, bundles: list[ModelBundle]) -> None:
    """Concurrent writers lose no entry; the manifest is replaced, never rewritten in place."""
    registry = Registry(tmp_path)
    registry.add(bundles[0], status="promoted")
    inode = (tmp_path / MANIFEST_NAME).stat().st_ino
    more = [
        untrained_bundle(seed=10 + i, created_at=f"2026-02-0{i + 1}T00:00:00Z") for i in range(6)
    ]
    errors: list[BaseException] = []

    def add(bundle: ModelBundle) -> None:
        try:
            Registry(tmp_path).add(bundle, status="promoted")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(b,)) for b in more]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(registry.entries()) == 7
    assert len(registry.history()) == 7
    assert (tmp_path / MANIFEST_NAME).stat().st_ino != inode  # renamed into place
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- serving from the registry folder (ModelSource) --------------------------------------------


class Rejections:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, reason: str, detail: str) -> None:
        self.seen.append((reason, detail))


def source_for(path: Path, secret: str | None = None) -> tuple[ModelSource, Rejections]:
    rejections = Rejections()
    settings = ModelSettings(path=path, signing_secret=secret)
    return ModelSource(settings, on_reject=rejections), rejections


def failures(rejections: Rejections) -> int:
    """Bundles refused (each is counted in sf_model_load_failures_total by the recorder)."""
    return len(rejections.seen)


def test_serve_loads_the_current_version_not_the_newest_file(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path)
    registry.add(bundles[0], status="promoted")
    registry.add(bundles[1], status="rejected", reason="worse")
    registry.add(bundles[2], status="candidate")
    source, rejections = source_for(tmp_path)

    loaded = source.poll()
    assert loaded is not None and same(loaded.bundle, bundles[0])
    assert source.poll() is None  # nothing new

    registry.promote(bundles[2].version)
    loaded = source.poll()
    assert loaded is not None and loaded.bundle.version == bundles[2].version
    registry.rollback()
    loaded = source.poll()
    assert loaded is not None and loaded.bundle.version == bundles[0].version
    assert failures(rejections) == 0


def test_serve_waits_while_the_registry_has_no_current_version(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path)
    registry.add(bundles[0], status="candidate")
    source, rejections = source_for(tmp_path)
    assert source.poll() is None
    assert failures(rejections) == 0 and rejections.seen == []
    registry.promote(bundles[0].version)
    assert source.poll() is not None


def test_serve_without_a_registry_keeps_serving_the_newest_file(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    bundles[0].save(tmp_path)
    source, _ = source_for(tmp_path)
    loaded = source.poll()
    assert loaded is not None and loaded.bundle.version == bundles[0].version
    bundles[1].save(tmp_path)
    loaded = source.poll()
    assert loaded is not None and loaded.bundle.version == bundles[1].version
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_with_a_secret_serve_needs_the_registry_signature(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path)
    good, unsigned, forged = bundles[:3]
    registry.add(good, status="promoted", signature=hmac_signature(good, SECRET))
    registry.add(unsigned)
    registry.add(forged, signature=hmac_signature(forged, "not the secret"))
    source, rejections = source_for(tmp_path, SECRET)

    loaded = source.poll()
    assert loaded is not None and loaded.bundle.version == good.version

    registry.promote(unsigned.version)
    assert source.poll() is None
    registry.promote(forged.version)
    assert source.poll() is None
    assert source.poll() is None  # the same rejected file is not counted twice
    assert [reason for reason, _ in rejections.seen] == ["unsigned", "forged"]
    assert unsigned.version in rejections.seen[0][1]
    assert failures(rejections) == 2

    registry.promote(good.version)
    loaded = source.poll()
    assert loaded is not None and loaded.bundle.version == good.version


def test_with_a_secret_plain_files_need_a_sidecar_signature(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    path = bundles[0].save(tmp_path)
    source, rejections = source_for(tmp_path, SECRET)
    assert source.poll() is None  # unsigned

    sidecar = path.with_name(path.name + ".sig")
    sidecar.write_text(hmac_signature(bundles[0], "wrong") + "\n")
    assert source.poll() is None  # forged

    sidecar.write_text(hmac_signature(bundles[0], SECRET) + "\n")
    loaded = source.poll()
    assert loaded is not None and loaded.bundle.version == bundles[0].version
    assert [reason for reason, _ in rejections.seen] == ["unsigned", "forged"]
    assert failures(rejections) == 2


def test_a_damaged_current_bundle_is_rejected_and_counted(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    registry = Registry(tmp_path)
    entry = registry.add(bundles[0], status="promoted")
    path = tmp_path / entry.file
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    source, rejections = source_for(tmp_path)
    assert source.poll() is None
    assert rejections.seen[0][0] == "damaged"
    assert "checksum" in rejections.seen[0][1]
    assert failures(rejections) == 1


def test_a_bundle_that_does_not_fit_the_settings_is_incompatible(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    Registry(tmp_path).add(bundles[0], status="promoted")
    rejections = Rejections()
    settings = ModelSettings(path=tmp_path, features=["a", "b", "c"])
    assert ModelSource(settings, on_reject=rejections).poll() is None
    assert rejections.seen[0][0] == "incompatible"
    assert failures(rejections) == 1


# -- one story of "the current model" ----------------------------------------------------------


def test_every_command_sees_the_same_current_model(
    tmp_path: Path, bundles: list[ModelBundle], caplog: pytest.LogCaptureFixture
) -> None:
    """serve, `models list` and backtest (current_file) agree, also with a bundle file
    copied into the folder by hand: not in registry.json, never served, and said so."""
    registry = Registry(tmp_path)
    registry.add(bundles[0], status="promoted")
    registry.add(bundles[1], status="candidate")
    stray = bundles[3].save(tmp_path)  # newest of all, but not in registry.json

    assert current_file(tmp_path) == tmp_path / f"{bundles[0].version}.sfmodel"
    assert registry.current() is not None and registry.current().version == bundles[0].version  # type: ignore[union-attr]
    assert registry.unregistered() == [stray]
    served = ModelSource(ModelSettings(path=tmp_path)).poll()
    assert served is not None and served.bundle.version == bundles[0].version
    assert f"{stray.name} not in registry.json: never served" in caplog.text


def test_the_current_model_of_plain_files_a_file_and_nothing(
    tmp_path: Path, bundles: list[ModelBundle]
) -> None:
    one = bundles[0].save(tmp_path)
    newest = bundles[2].save(tmp_path)
    assert current_file(tmp_path) == newest  # no registry.json: the newest file
    assert current_file(one) == one
    assert Registry(tmp_path).unregistered() == []
    with pytest.raises(BundleError, match="does not exist"):
        current_file(tmp_path / "nothing")
    empty = Registry(tmp_path / "reg")
    empty.add(bundles[1], status="candidate")
    with pytest.raises(BundleError, match=f"no current model in .*versions: {bundles[1].version}"):
        current_file(tmp_path / "reg")
