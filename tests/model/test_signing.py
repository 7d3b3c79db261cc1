"""Release signatures: Ed25519 with key ids (and rotation), HMAC as the weaker option, what a
signature binds (model name, version, bytes, release), and the ways to fail."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from stream_forecaster.model.bundle import BundleError
from stream_forecaster.model.keys import KeyFileError, load_private_key, load_public_keys
from stream_forecaster.model.signing import (
    PROMOTE,
    SignatureError,
    Signer,
    Verifier,
    rollback_from,
    rolls_back_from,
    warn_if_off,
)
from stream_forecaster.settings import ModelSettings, Settings
from tests.harness.signing import key_pair

DATA = b"SFBUNDLE/1 sha256=... pretend bundle bytes \x00\x01\x02"
SECRET = "s3cret-shared-by-retrain-and-serve"
RELEASE = {"name": "pm25", "version": "20260101T000000Z-1a2b3c4d", "release": PROMOTE}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return key_pair(tmp_path / "keys")


def signer_of(private: Path) -> Signer:
    return Signer(load_private_key(private), None)


def verifier_of(public: Path) -> Verifier:
    return Verifier(load_public_keys(public), None)


def refusal(verifier: Verifier, signature: str | None, data: bytes = DATA, **kw: str) -> str:
    with pytest.raises(SignatureError) as caught:
        verifier.verify(data, signature, **{**RELEASE, **kw})
    assert isinstance(caught.value, BundleError)  # callers that catch BundleError see it
    return caught.value.reason


def test_an_ed25519_signature_names_its_key_and_verifies(keys: tuple[Path, Path]) -> None:
    private, public = keys
    signer = signer_of(private)
    signature = signer.sign(DATA, **RELEASE)
    assert signature is not None
    scheme, kid, raw = signature.split(":")
    assert (scheme, kid, len(base64.b64decode(raw))) == ("ed25519", signer.key_id, 64)
    assert public.name == f"{kid}.pub" and oct(os.stat(private).st_mode & 0o777) == "0o600"
    verifier_of(public).verify(DATA, signature, **RELEASE)
    verifier_of(public).verify(DATA, f"  {signature}\n", **RELEASE)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "other-model"}, "forged"),  # replayed under another model name
        ({"version": "20250101T000000Z-00000000"}, "forged"),  # claimed for another version
        ({"release": rollback_from("20270101T000000Z-ffffffff")}, "forged"),  # as a rollback
        ({}, "forged"),  # the same release, but the bytes altered after signing
    ],
)
def test_a_signature_binds_name_version_release_and_bytes(
    keys: tuple[Path, Path], change: dict[str, str], reason: str
) -> None:
    private, public = keys
    signature = signer_of(private).sign(DATA, **RELEASE)
    data = DATA if change else DATA + b"x"
    assert refusal(verifier_of(public), signature, data, **change) == reason


def test_a_signed_release_of_another_model_is_named_as_such(keys: tuple[Path, Path]) -> None:
    private, public = keys
    signature = signer_of(private).sign(DATA, **{**RELEASE, "name": "other"})
    with pytest.raises(SignatureError) as caught:
        verifier_of(public).verify(DATA, signature, **RELEASE, bundle_name="other")
    assert caught.value.reason == "other_model"
    assert "release of model 'other', but this process follows 'pm25'" in str(caught.value)


def test_rotation_trusts_every_key_in_the_folder_and_only_those(tmp_path: Path) -> None:
    old_private, _ = key_pair(tmp_path / "trusted")
    new_private, _ = key_pair(tmp_path / "trusted")
    stranger, _ = key_pair(tmp_path / "elsewhere")
    verifier = Verifier(load_public_keys(tmp_path / "trusted"), None)
    for private in (old_private, new_private):
        verifier.verify(DATA, signer_of(private).sign(DATA, **RELEASE), **RELEASE)
    with pytest.raises(SignatureError, match="which is not trusted") as caught:
        verifier.verify(DATA, signer_of(stranger).sign(DATA, **RELEASE), **RELEASE)
    assert caught.value.reason == "forged"
    assert old_private.stem in str(caught.value) and new_private.stem in str(caught.value)


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_unsigned_is_refused_when_verification_is_on(
    keys: tuple[Path, Path], signature: str | None
) -> None:
    assert refusal(verifier_of(keys[1]), signature) == "unsigned"
    assert refusal(Verifier({}, SECRET), signature) == "unsigned"


@pytest.mark.parametrize(
    "signature",
    [
        "0" * 64,  # a signature from before release statements
        "ed25519:",
        "ed25519:nokey:AAAA",
        "hmac-sha256:" + "0" * 64,
        "hmac-sha256:é" * 8,  # non-ASCII must not crash the constant-time compare
        "garbage",
        "x" * 10_000,
    ],
)
def test_garbage_signatures_are_forged_and_never_reveal_a_valid_one(
    keys: tuple[Path, Path], signature: str
) -> None:
    verifier = Verifier(load_public_keys(keys[1]), SECRET)
    valid = Signer(None, SECRET).sign(DATA, **RELEASE)
    with pytest.raises(SignatureError) as caught:
        verifier.verify(DATA, signature, **RELEASE)
    assert caught.value.reason == "forged"
    assert valid is not None and valid.split(":")[1] not in str(caught.value)
    assert len(str(caught.value)) < 600  # a huge signature is not echoed


def test_hmac_is_the_weaker_option_and_binds_the_same(keys: tuple[Path, Path]) -> None:
    signature = Signer(None, SECRET).sign(DATA, **RELEASE)
    assert signature is not None and signature.startswith("hmac-sha256:")
    Verifier({}, SECRET).verify(DATA, signature, **RELEASE)
    assert refusal(Verifier({}, "another secret"), signature) == "forged"
    assert refusal(Verifier({}, SECRET), signature, name="other") == "forged"
    # Trusting only keys, an HMAC signature is not enough.
    with pytest.raises(SignatureError, match="SF_MODEL__SIGNING_SECRET is not set"):
        verifier_of(keys[1]).verify(DATA, signature, **RELEASE)


def test_with_verification_off_anything_is_accepted() -> None:
    for signature in (None, "garbage", "ed25519:x:y"):
        Verifier({}, None).verify(DATA, signature, **RELEASE)
    assert Signer(None, None).sign(DATA, **RELEASE) is None


def test_a_rollback_release_names_the_version_it_leaves() -> None:
    release = rollback_from("20260201T000000Z-bbbbbbbb")
    assert rolls_back_from(release, "20260201T000000Z-bbbbbbbb")
    assert not rolls_back_from(release, "20260301T000000Z-cccccccc")
    assert not rolls_back_from(PROMOTE, "20260201T000000Z-bbbbbbbb")


def test_a_signer_trusts_itself(keys: tuple[Path, Path]) -> None:
    settings = ModelSettings(signing_key=keys[0])
    verifier = Verifier.from_settings(settings)
    assert verifier.on
    signature = Signer.from_settings(settings).sign(DATA, **RELEASE)
    verifier.verify(DATA, signature, **RELEASE)


@pytest.mark.parametrize(
    ("setting", "content", "expected"),
    [
        ("signing_key", None, "cannot read"),
        ("signing_key", b"not a key", "is not an unencrypted PEM private key"),
        (
            "trusted_keys",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "private key",
        ),
        ("trusted_keys", None, "cannot read"),
    ],
)
def test_a_bad_key_file_is_one_line_naming_the_setting(
    tmp_path: Path, setting: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KeyFileError) as caught:
        Verifier.from_settings(ModelSettings(**{setting: path}))
    message = str(caught.value)
    assert f"SF_MODEL__{setting.upper()}" in message and expected in message
    assert "\n" not in message


def test_a_public_key_folder_without_keys_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        KeyFileError, match=r"SF_MODEL__TRUSTED_KEYS: the folder .* holds no \*\.pub"
    ):
        load_public_keys(tmp_path)


def test_signatures_off_is_a_warning_at_start_up(
    keys: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    blank = Settings(model={"signing_secret": "  ", "trusted_keys": "", "signing_key": ""}).model
    assert not warn_if_off(Verifier.from_settings(blank), "serve")
    assert "model signatures are off" in caplog.text
    assert "every bundle in SF_MODEL__PATH and on the model topic is trusted" in caplog.text
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    caplog.clear()
    caplog.set_level("INFO")
    assert warn_if_off(verifier_of(keys[1]), "retrain")
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert keys[1].stem in caplog.text
