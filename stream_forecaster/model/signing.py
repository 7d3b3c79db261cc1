"""Signatures of model releases: what a running ``serve`` may swap in.

What is signed is a *release statement*, not just a bundle: the model name (the key on the
model topic, ``SF_MODEL__NAME``), the bundle's version, the SHA-256 of its exact bytes, and
the release: ``promote``, or ``rollback from <version>`` (written by ``models rollback``,
the only way ``serve`` takes a version older than the one it serves). A signature is thus
good for one model name, one version, one byte string and one kind of release: it cannot
be replayed under another name, for an older version, or for a rejected candidate (only
promoted versions are signed).

Two schemes, told apart by the signature's prefix:

- ``ed25519:<key id>:<base64>``: Ed25519 (the default to use). ``train``, ``retrain`` and
  ``models promote`` / ``rollback`` hold the private key (``SF_MODEL__SIGNING_KEY``);
  ``serve`` only public keys (``SF_MODEL__TRUSTED_KEYS``), several at once for rotation.
- ``hmac-sha256:<hex>``: HMAC under a secret every party holds (``SF_MODEL__SIGNING_SECRET``);
  weaker: whoever can verify can also sign, so one compromised ``serve`` can sign models
  for all.

Verification is on when trusted keys or a secret are configured; then a bundle must carry a
signature that one of them verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Final, Literal, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stream_forecaster.model.bundle import BundleError, ModelBundle
from stream_forecaster.model.files import read_regular_file
from stream_forecaster.model.keys import (
    PRIVATE_KEY_SETTING,
    TRUSTED_KEYS_SETTING,
    key_id,
    load_private_key,
    load_public_keys,
)
from stream_forecaster.settings import ModelSettings

log = logging.getLogger(__name__)

SECRET_SETTING: Final = "SF_MODEL__SIGNING_SECRET"
#: A bundle file's signature is in the file of its name plus this (``<bundle>.sig``).
SIGNATURE_SUFFIX: Final = ".sig"
#: The release of a version promoted (by retrain, ``models promote`` or ``train``).
PROMOTE: Final = "promote"
_ROLLBACK_FROM: Final = "rollback from "
_STATEMENT_FORMAT: Final = "stream-forecaster model release v1"
_ED25519: Final = "ed25519"
_HMAC: Final = "hmac-sha256"
#: Longest signature or release text read from outside (a version id is ~30 characters).
MAX_SIGNATURE_CHARS: Final = 512

RejectReason = Literal["unsigned", "forged", "other_model"]


class SignatureError(BundleError):
    """A bundle lacks the signature verification requires, or its signature does not cover
    this model name, version, release and bytes.

    Attributes:
        reason: ``"unsigned"``, ``"forged"``, or ``"other_model"`` (the bundle names another
            model and its signature does not cover this one).
    """

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Offer(NamedTuple):
    """A bundle whose release was verified, as it goes to the forecasters."""

    bundle: ModelBundle
    #: ``promote``, or ``rollback from <version>``.
    release: str


def sidecar_signature(bundle_path: Path) -> str | None:
    """The signature in ``<bundle_path>.sig`` (surrounding whitespace ignored), if any; an
    unreadable one (not a regular file, too long, not UTF-8) is logged and ignored."""
    sidecar = bundle_path.with_name(bundle_path.name + SIGNATURE_SUFFIX)
    if not sidecar.exists():
        return None
    try:
        text = read_regular_file(sidecar, MAX_SIGNATURE_CHARS).decode("utf-8").strip()
    except (BundleError, UnicodeDecodeError) as exc:
        log.warning("ignoring signature file %s: %s", sidecar, exc)
        return None
    return text or None


def rollback_from(version: str) -> str:
    """The release of a rollback away from ``version`` (what ``models rollback`` signs)."""
    return f"{_ROLLBACK_FROM}{version}"


def rolls_back_from(release: str, version: str) -> bool:
    """Whether ``release`` is a rollback away from ``version``."""
    return release == rollback_from(version)


def statement(name: str, version: str, data: bytes, release: str) -> bytes:
    """The bytes a signature covers: canonical JSON binding the model name, the version,
    the SHA-256 of ``data`` and the release."""
    return json.dumps(
        {
            "format": _STATEMENT_FORMAT,
            "model": name,
            "version": version,
            "sha256": hashlib.sha256(data).hexdigest(),
            "release": release,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode("ascii")


class Signer:
    """Signs releases: with the Ed25519 private key when one is set, else with the HMAC
    secret, else not at all.

    Args:
        private_key: the Ed25519 key (``SF_MODEL__SIGNING_KEY``), or ``None``.
        secret: the HMAC secret (``SF_MODEL__SIGNING_SECRET``), or ``None``.
    """

    def __init__(self, private_key: Ed25519PrivateKey | None, secret: str | None) -> None:
        self._private_key = private_key
        self._secret = secret or None
        self.key_id = key_id(private_key.public_key()) if private_key is not None else None

    @classmethod
    def from_settings(cls, model: ModelSettings) -> Signer:
        """The signer the settings describe.

        Raises:
            KeyFileError: ``SF_MODEL__SIGNING_KEY`` is not a readable Ed25519 private key.
        """
        key = load_private_key(model.signing_key) if model.signing_key is not None else None
        secret = model.signing_secret.get_secret_value() if model.signing_secret else None
        return cls(key, secret)

    @property
    def on(self) -> bool:
        return self._private_key is not None or self._secret is not None

    def describe(self) -> str:
        """What signs, for logs: the key id or "the HMAC secret"."""
        if self._private_key is not None:
            return f"Ed25519 key {self.key_id} ({PRIVATE_KEY_SETTING})"
        return f"the HMAC secret ({SECRET_SETTING})" if self._secret else "nothing (unsigned)"

    def sign(self, data: bytes, *, name: str, version: str, release: str = PROMOTE) -> str | None:
        """The signature of this release of ``data``; ``None`` when signing is off.

        Args:
            data: the bundle's exact bytes.
            name: the model name it is published under.
            version: the bundle's version.
            release: ``promote`` or a :func:`rollback_from`.
        """
        message = statement(name, version, data, release)
        if self._private_key is not None:
            raw = self._private_key.sign(message)
            return f"{_ED25519}:{self.key_id}:{base64.b64encode(raw).decode('ascii')}"
        if self._secret is not None:
            digest = hmac.new(self._secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
            return f"{_HMAC}:{digest}"
        return None


class Verifier:
    """Checks release signatures against the trusted public keys and the HMAC secret.

    Args:
        public_keys: trusted Ed25519 keys by key id.
        secret: the HMAC secret, or ``None``.
    """

    def __init__(self, public_keys: dict[str, Ed25519PublicKey], secret: str | None) -> None:
        self._keys = dict(public_keys)
        self._secret = secret or None

    @classmethod
    def from_settings(cls, model: ModelSettings) -> Verifier:
        """The verifier the settings describe: the keys of ``SF_MODEL__TRUSTED_KEYS``, the
        public half of ``SF_MODEL__SIGNING_KEY`` (a signer trusts itself), the secret.

        Raises:
            KeyFileError: a key setting names no readable Ed25519 key.
        """
        keys = load_public_keys(model.trusted_keys) if model.trusted_keys is not None else {}
        if model.signing_key is not None:
            own = load_private_key(model.signing_key).public_key()
            keys.setdefault(key_id(own), own)
        secret = model.signing_secret.get_secret_value() if model.signing_secret else None
        return cls(keys, secret)

    @property
    def on(self) -> bool:
        """Whether signatures are required (some key or secret is configured)."""
        return bool(self._keys) or self._secret is not None

    def describe(self) -> str:
        """What is trusted, for logs."""
        parts = []
        if self._keys:
            parts.append(f"Ed25519 key{'s' if len(self._keys) > 1 else ''} {self._key_list()}")
        if self._secret is not None:
            parts.append(f"the HMAC secret ({SECRET_SETTING})")
        return " and ".join(parts) or "nothing (signatures off)"

    def verify(
        self,
        data: bytes,
        signature: str | None,
        *,
        name: str,
        version: str,
        release: str = PROMOTE,
        bundle_name: str | None = None,
    ) -> None:
        """Check that ``signature`` covers this release of ``data``; with verification off,
        accept anything.

        Args:
            data: the bundle's exact bytes.
            signature: what came with them, or ``None``.
            name: the model name this process follows (``SF_MODEL__NAME``).
            version: the bundle's version.
            release: the release it came as (``promote``, or ``rollback from <version>``).
            bundle_name: the name recorded in the bundle: a release signed for that name
                is refused as ``other_model``, not ``forged``.

        Raises:
            SignatureError: ``unsigned``, ``forged`` or ``other_model``; the message says
                what was expected and what came, never a valid signature.
        """
        if not self.on:
            return
        text = (signature or "").strip()
        if not text:
            raise SignatureError(
                "unsigned",
                f"unsigned bundle: signatures are required (trusted: {self.describe()}), got none",
            )
        if self._verifies(text, statement(name, version, data, release)):
            return
        covered = (
            f"model {name!r}, version {version}, release {release!r} and its {len(data)} bytes"
        )
        if (
            bundle_name is not None
            and bundle_name != name
            and self._verifies(text, statement(bundle_name, version, data, release))
        ):
            raise SignatureError(
                "other_model",
                f"it is a signed release of model {bundle_name!r}, but this process follows "
                f"{name!r} (SF_MODEL__NAME); its signature does not cover {covered}",
            )
        raise SignatureError(
            "forged",
            f"its signature does not cover {covered}: it was made for another model name, "
            "version or release, or the bytes were altered after signing",
        )

    def _verifies(self, text: str, message: bytes) -> bool:
        scheme, _, rest = text[:MAX_SIGNATURE_CHARS].partition(":")
        if scheme == _ED25519:
            return self._ed25519(rest, message)
        if scheme == _HMAC:
            return self._hmac(rest, message)
        shown = text[:16] + ("..." if len(text) > 16 else "")
        raise SignatureError(
            "forged",
            f"signature {shown!r} is in no known format: expected "
            f"'{_ED25519}:<key id>:<base64>' or '{_HMAC}:<hex>' (a bundle signed before "
            "Ed25519 signatures came: promote it again to sign it)",
        )

    def _ed25519(self, rest: str, message: bytes) -> bool:
        kid, _, encoded = rest.partition(":")
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError(
                "forged",
                f"signed with Ed25519 key {kid[:16]!r}, which is not trusted (trusted keys: "
                f"{self._key_list() or f'none; set {TRUSTED_KEYS_SETTING}'})",
            )
        try:
            key.verify(base64.b64decode(encoded, validate=True), message)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def _hmac(self, rest: str, message: bytes) -> bool:
        if self._secret is None:
            raise SignatureError(
                "forged",
                f"HMAC-signed, but {SECRET_SETTING} is not set here (trusted: {self.describe()})",
            )
        expected = hmac.new(self._secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
        given = rest.strip().lower().encode("ascii", errors="replace")
        return hmac.compare_digest(given, expected.encode("ascii"))

    def _key_list(self) -> str:
        return ", ".join(sorted(self._keys))


def warn_if_off(verifier: Verifier, role: Literal["serve", "retrain"]) -> bool:
    """Log what is trusted, or a warning when nothing is (signatures off); returns whether
    verification is on.

    Args:
        verifier: what this process trusts.
        role: the command, for what being off means to it.
    """
    if verifier.on:
        log.info("model signatures required; trusted: %s", verifier.describe())
        return True
    what = (
        "every bundle in SF_MODEL__PATH and on the model topic is trusted"
        if role == "serve"
        else "the models it reads are not checked and those it publishes carry no signature"
    )
    log.warning(
        "model signatures are off (%s, %s and %s are unset): %s",
        TRUSTED_KEYS_SETTING,
        PRIVATE_KEY_SETTING,
        SECRET_SETTING,
        what,
    )
    return False
