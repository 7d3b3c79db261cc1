"""HMAC-SHA256 signatures of bundles: sign, verify, and the two ways to fail."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from stream_forecaster.model.bundle import BundleError
from stream_forecaster.model.signing import SignatureError, sign, verify

DATA = b"SFBUNDLE/1 sha256=... pretend bundle bytes \x00\x01\x02"
SECRET = "s3cret-shared-by-retrain-and-serve"


def test_sign_is_the_hex_hmac_sha256() -> None:
    expected = hmac.new(SECRET.encode(), DATA, hashlib.sha256).hexdigest()
    assert sign(DATA, SECRET) == expected
    assert len(expected) == 64


def test_a_valid_signature_is_accepted_in_any_case_and_with_whitespace() -> None:
    signature = sign(DATA, SECRET)
    verify(DATA, signature, SECRET)
    verify(DATA, f" {signature.upper()}\n", SECRET)


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_unsigned_is_rejected_when_a_secret_is_set(signature: str | None) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(DATA, signature, SECRET)
    assert caught.value.reason == "unsigned"
    assert "SF_MODEL__SIGNING_SECRET" in str(caught.value)
    assert isinstance(caught.value, BundleError)  # callers that catch BundleError see it


@pytest.mark.parametrize(
    "signature",
    [
        sign(DATA, "another secret"),  # signed with the wrong secret
        sign(DATA + b"x", SECRET),  # the data changed after signing
        "0" * 64,
        "not hex at all",
        sign(DATA, SECRET)[:-1],  # truncated
        "é" * 64,  # non-ASCII must not crash the constant-time compare
    ],
)
def test_forged_is_rejected_without_revealing_the_expected_signature(signature: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(DATA, signature, SECRET)
    assert caught.value.reason == "forged"
    message = str(caught.value)
    assert "does not match" in message
    assert sign(DATA, SECRET) not in message  # no signing oracle in the logs


def test_data_altered_after_signing_is_forged() -> None:
    signature = sign(DATA, SECRET)
    altered = bytearray(DATA)
    altered[-1] ^= 1
    with pytest.raises(SignatureError) as caught:
        verify(bytes(altered), signature, SECRET)
    assert caught.value.reason == "forged"


@pytest.mark.parametrize("secret", [None, ""])
@pytest.mark.parametrize("signature", [None, "garbage", sign(DATA, SECRET)])
def test_without_a_secret_anything_is_accepted(secret: str | None, signature: str | None) -> None:
    verify(DATA, signature, secret)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        sign(DATA, "")


def test_signatures_off_is_a_warning_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    from pydantic import SecretStr

    from stream_forecaster.model.signing import warn_if_off
    from stream_forecaster.settings import Settings

    blank = Settings(model={"signing_secret": "  "}).model.signing_secret
    assert not warn_if_off(blank, "serve")
    assert "model signatures are off (SF_MODEL__SIGNING_SECRET is unset or blank)" in caplog.text
    assert "every bundle in SF_MODEL__PATH and on the model topic is trusted" in caplog.text
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    caplog.clear()
    assert warn_if_off(SecretStr("s3cret"), "retrain")
    assert caplog.records == []
