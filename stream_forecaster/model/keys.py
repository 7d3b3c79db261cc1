"""Ed25519 keys for model signatures: the private key that ``train``, ``retrain`` and
``models promote`` / ``rollback`` sign with, and the public keys ``serve`` trusts.

A key is named by its id: the first 16 hex digits of the SHA-256 of its raw public key.
Every signature carries the id of the key that made it, so ``serve`` can trust several
keys at once and a key can be rotated without stopping anything (see
``docs/how-to/signing.md``). Key files are PEM: the private key PKCS#8 (``<id>.key``,
mode 0600), a public key SubjectPublicKeyInfo (``<id>.pub``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stream_forecaster.model.bundle import BundleError
from stream_forecaster.model.files import read_regular_file
from stream_forecaster.settings import ConfigError

PRIVATE_KEY_SETTING: Final = "SF_MODEL__SIGNING_KEY"
TRUSTED_KEYS_SETTING: Final = "SF_MODEL__TRUSTED_KEYS"
PRIVATE_SUFFIX: Final = ".key"
PUBLIC_SUFFIX: Final = ".pub"
#: A PEM Ed25519 key is about 120 bytes; anything much larger is not one.
_MAX_KEY_FILE_BYTES: Final = 16 * 1024
#: Trusted keys kept at once (rotation needs two or three).
_MAX_TRUSTED_KEYS: Final = 64


class KeyFileError(ConfigError):
    """A key file is missing, unreadable or not an Ed25519 key of the expected kind; the
    message names the setting and the file."""


def key_id(public: Ed25519PublicKey) -> str:
    """The key's id: the first 16 hex digits of the SHA-256 of its 32 raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path`` (``SF_MODEL__SIGNING_KEY``).

    Raises:
        KeyFileError: missing, unreadable, encrypted or not an Ed25519 private key.
    """
    data = _read_key_file(path, PRIVATE_KEY_SETTING)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(
            f"{PRIVATE_KEY_SETTING}: {path} is not an unencrypted PEM private key ({exc}); "
            "`stream-forecaster models keygen DIR` makes one"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(
            f"{PRIVATE_KEY_SETTING}: {path} holds a {type(key).__name__}; expected an "
            "Ed25519 private key"
        )
    return key


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """The trusted public keys by id: the PEM file ``path``, or every ``*.pub`` file in the
    folder ``path`` (``SF_MODEL__TRUSTED_KEYS``).

    Raises:
        KeyFileError: nothing readable there, a file that is not an Ed25519 public key, or
            more than 64 keys.
    """
    if path.is_dir():
        files = sorted(path.glob(f"*{PUBLIC_SUFFIX}"))
        if not files:
            raise KeyFileError(
                f"{TRUSTED_KEYS_SETTING}: the folder {path} holds no *{PUBLIC_SUFFIX} public "
                "key files"
            )
        if len(files) > _MAX_TRUSTED_KEYS:
            raise KeyFileError(
                f"{TRUSTED_KEYS_SETTING}: the folder {path} holds {len(files)} public keys; "
                f"at most {_MAX_TRUSTED_KEYS} are read"
            )
    else:
        files = [path]
    keys: dict[str, Ed25519PublicKey] = {}
    for file in files:
        key = _public_key(file)
        keys[key_id(key)] = key
    return keys


def generate_key_pair(folder: Path) -> tuple[str, Path, Path]:
    """Write a new key pair into ``folder``: ``<id>.key`` (private, mode 0600) and
    ``<id>.pub``.

    Returns:
        The key id, the private key file and the public key file.
    """
    private = Ed25519PrivateKey.generate()
    kid = key_id(private.public_key())
    folder.mkdir(parents=True, exist_ok=True)
    private_file, public_file = folder / f"{kid}{PRIVATE_SUFFIX}", folder / f"{kid}{PUBLIC_SUFFIX}"
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    public_file.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return kid, private_file, public_file


def _public_key(path: Path) -> Ed25519PublicKey:
    data = _read_key_file(path, TRUSTED_KEYS_SETTING)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        hint = (
            " (it is a private key: serve needs only the .pub file)" if b"PRIVATE" in data else ""
        )
        raise KeyFileError(
            f"{TRUSTED_KEYS_SETTING}: {path} is not a PEM public key{hint} ({exc})"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(
            f"{TRUSTED_KEYS_SETTING}: {path} holds a {type(key).__name__}; expected an Ed25519 "
            "public key"
        )
    return key


def _read_key_file(path: Path, setting: str) -> bytes:
    try:
        return read_regular_file(path, _MAX_KEY_FILE_BYTES)
    except BundleError as exc:
        raise KeyFileError(f"{setting}: {exc}") from None
