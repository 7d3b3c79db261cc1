"""How a model version reaches the forecasters: signed when ``SF_MODEL__SIGNING_SECRET`` is
set, and published to the model topic. The one place that signs and publishes, for
``train`` (a signature beside the bundle it writes), ``models promote`` / ``rollback`` (a
registry version, its recorded signature checked first) and ``retrain`` (a candidate the
promotion gate judged).
"""

from __future__ import annotations

import logging
from pathlib import Path

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.model.registry import Entry, Registry
from stream_forecaster.model.signing import SIGNATURE_SUFFIX, sign, verify
from stream_forecaster.model.topic import publish_bundle
from stream_forecaster.settings import ModelSettings, Settings

log = logging.getLogger(__name__)


def signature_of(data: bytes, model: ModelSettings) -> str | None:
    """The signature of ``data`` under the configured secret; ``None`` without one."""
    secret = model.signing_secret
    return None if secret is None else sign(data, secret.get_secret_value())


def sign_file(path: Path, model: ModelSettings) -> Path | None:
    """Write the signature of the bundle file ``path`` to ``<path>.sig`` when a secret is
    set; returns the signature file, or ``None``."""
    signature = signature_of(path.read_bytes(), model)
    if signature is None:
        return None
    sidecar = path.with_name(path.name + SIGNATURE_SUFFIX)
    sidecar.write_text(signature + "\n")
    return sidecar


def publish_version(settings: Settings, registry: Registry, version: str) -> str | None:
    """Publish ``version``'s exact file bytes to the model topic; returns the signature
    published with it (signed now when the registry has none recorded).

    Raises:
        RegistryError: no such version.
        SignatureError: the signature recorded for it does not match (a registry file was
            swapped); it is not published.
        ModelTopicError: the brokers cannot be reached or did not acknowledge it.
    """
    entry = registry.entry(version)
    data = registry.bundle_bytes(version)
    bundle = ModelBundle.from_bytes(data, source=str(registry.path / entry.file))
    secret = settings.model.signing_secret
    signature = entry.signature
    if secret is not None:
        if signature is not None:
            # A registry file swapped for another bundle must not get signed here.
            verify(data, signature, secret.get_secret_value())
        else:
            signature = sign(data, secret.get_secret_value())
            log.info("version %s had no signature; signed it now", version)
    publish_bundle(settings, bundle, signature, data=data)
    return signature


def add_judged(
    settings: Settings,
    registry: Registry,
    candidate: ModelBundle,
    *,
    promote: bool,
    reason: str,
    figures: dict[str, float],
) -> Entry:
    """Record a candidate the promotion gate judged: promoted (the registry's current
    version, and published to the model topic) or rejected (kept with ``reason``).

    Raises:
        ModelTopicError: a promoted candidate could not be published (it is recorded).
    """
    data = candidate.to_bytes()
    signature = signature_of(data, settings.model)
    if not promote:
        return registry.add(
            candidate, status="rejected", reason=reason, metrics=figures, signature=signature
        )
    entry = registry.add(candidate, status="promoted", metrics=figures, signature=signature)
    publish_bundle(settings, candidate, signature, data=data)
    return entry
