"""HMAC-SHA256 signatures of model bundles, with a secret shared by retrain and serve.

The signature covers the bundle's exact bytes (:meth:`ModelBundle.to_bytes`), which already
carry their own sha256: the checksum catches damage, the signature catches a bundle that
did not come from someone holding the secret. With no secret configured, signatures are
neither required nor checked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Final, Literal

from stream_forecaster.model.bundle import BundleError

log = logging.getLogger(__name__)

SECRET_SETTING: Final = "SF_MODEL__SIGNING_SECRET"
#: A bundle file's signature is in the file of its name plus this (``<bundle>.sig``).
SIGNATURE_SUFFIX: Final = ".sig"
_HEX_RE: Final = re.compile(r"^[0-9a-f]{64}$")

RejectReason = Literal["unsigned", "forged"]


class SignatureError(BundleError):
    """A bundle lacks the signature a configured secret requires, or its signature is wrong.

    Attributes:
        reason: ``"unsigned"`` or ``"forged"``.
    """

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def warn_if_off(secret: object | None, role: Literal["serve", "retrain"]) -> bool:
    """Log a warning when signatures are off (no secret, or a blank one); returns whether
    they are on.

    Args:
        secret: the configured signing secret (``None``: unset or blank).
        role: the command, for what being off means to it.
    """
    if secret is not None:
        return True
    what = (
        "every bundle in SF_MODEL__PATH and on the model topic is trusted"
        if role == "serve"
        else "the models it publishes carry no signature"
    )
    log.warning("model signatures are off (%s is unset or blank): %s", SECRET_SETTING, what)
    return False


def sign(data: bytes, secret: str) -> str:
    """The HMAC-SHA256 of ``data`` under ``secret``, as 64 lowercase hex digits."""
    if not secret:
        raise ValueError("expected a non-empty signing secret, got an empty one")
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str | None, secret: str | None) -> None:
    """Check ``signature`` against ``data`` when a secret is set (constant-time compare).

    Args:
        data: the signed bytes (a bundle's bytes).
        signature: the hex signature that came with them, or ``None``.
        secret: the shared secret; ``None`` or empty accepts anything.

    Raises:
        SignatureError: ``reason="unsigned"`` when no signature came with the data,
            ``reason="forged"`` when it is not the HMAC of the data under the secret.
    """
    if not secret:
        return
    if signature is None or not signature.strip():
        raise SignatureError(
            "unsigned",
            f"unsigned bundle: {SECRET_SETTING} is set, so an HMAC-SHA256 signature "
            "(64 hex digits) is expected, got none",
        )
    given = signature.strip().lower()
    expected = sign(data, secret)
    # The expected value is never shown: it would be a valid signature for these bytes.
    if not _HEX_RE.match(given) or not hmac.compare_digest(
        given.encode("ascii"), expected.encode("ascii")
    ):
        shown = given[:16] + ("..." if len(given) > 16 else "")
        raise SignatureError(
            "forged",
            f"forged bundle: expected the HMAC-SHA256 of its {len(data)} bytes under "
            f"{SECRET_SETTING}, got signature {shown!r}, which does not match; it was "
            "signed with another secret or altered after signing",
        )
