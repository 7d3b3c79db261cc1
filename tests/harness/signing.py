"""Signatures for tests, made as retrain and `models promote` make them."""

from __future__ import annotations

from pathlib import Path

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.model.keys import generate_key_pair
from stream_forecaster.model.signing import PROMOTE, Signer

#: The model name of a default ModelSettings: what serve follows and verifies against.
NAME = "default"


def hmac_signature(
    bundle: ModelBundle, secret: str, *, name: str = NAME, release: str = PROMOTE
) -> str:
    """The HMAC signature of this release of ``bundle.to_bytes()``."""
    signature = Signer(None, secret).sign(
        bundle.to_bytes(), name=name, version=bundle.version, release=release
    )
    assert signature is not None
    return signature


def key_signature(
    bundle: ModelBundle, private_key: Path, *, name: str = NAME, release: str = PROMOTE
) -> str:
    """The Ed25519 signature, with the key in ``private_key``, of this release of
    ``bundle.to_bytes()``."""
    from stream_forecaster.model.keys import load_private_key

    signature = Signer(load_private_key(private_key), None).sign(
        bundle.to_bytes(), name=name, version=bundle.version, release=release
    )
    assert signature is not None
    return signature


def key_pair(folder: Path) -> tuple[Path, Path]:
    """A new key pair in ``folder``: the private key file and the public key file."""
    _, private, public = generate_key_pair(folder)
    return private, public
