"""How a model version reaches the forecasters: its release signed (see
:mod:`~stream_forecaster.model.signing`) and published to the model topic. The one place
that signs and publishes, for ``train`` (a signature beside the bundle file it writes),
``models promote`` / ``rollback`` (a registry version, its recorded signature checked
first) and ``retrain`` (a candidate the promotion gate judged: only a promoted one is
signed).
"""

from __future__ import annotations

import logging
from pathlib import Path

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.model.registry import Entry, Registry
from stream_forecaster.model.signing import PROMOTE, SIGNATURE_SUFFIX, Signer, Verifier
from stream_forecaster.model.topic import publish_bundle
from stream_forecaster.settings import Settings

log = logging.getLogger(__name__)


def sign_file(path: Path, bundle: ModelBundle, signer: Signer) -> Path | None:
    """Write the signature of the promotion of the bundle file ``path`` to ``<path>.sig``
    when signing is on (the name signed is the bundle's); returns that file, or ``None``."""
    signature = signer.sign(
        path.read_bytes(), name=bundle.manifest.name, version=bundle.version, release=PROMOTE
    )
    if signature is None:
        return None
    sidecar = path.with_name(path.name + SIGNATURE_SUFFIX)
    sidecar.write_text(signature + "\n")
    return sidecar


def publish_version(
    settings: Settings, registry: Registry, version: str, release: str = PROMOTE
) -> str | None:
    """Sign this release of ``version`` and publish its exact file bytes to the model topic;
    returns the signature published with it (``None`` with signing off).

    A signature recorded for the version (it was promoted before) is checked first: a
    registry file swapped for another bundle must not get signed here.

    Args:
        settings: the cluster, topic, model name and keys.
        registry: the registry folder.
        version: the version to publish.
        release: ``promote``, or ``rollback from <current version>``.

    Raises:
        RegistryError: no such version.
        SignatureError: the signature recorded for it does not verify; nothing is published.
        KeyFileError: a key setting names no readable key.
        ModelTopicError: the brokers cannot be reached or did not acknowledge it.
    """
    entry = registry.entry(version)
    data = registry.bundle_bytes(version)
    bundle = ModelBundle.from_bytes(data, source=str(registry.path / entry.file))
    name = settings.model.name
    if entry.signature is not None:
        Verifier.from_settings(settings.model).verify(
            data, entry.signature, name=name, version=version, release=entry.release
        )
    signature = Signer.from_settings(settings.model).sign(
        data, name=name, version=version, release=release
    )
    publish_bundle(settings, bundle, signature, data=data, release=release)
    return signature


def trusted_current(registry: Registry, verifier: Verifier, name: str) -> ModelBundle | None:
    """The registry's current version, its release verified (with verification on); ``None``
    when nothing was promoted yet.

    Raises:
        SignatureError: its recorded signature is missing or does not verify.
        BundleError: its file cannot be read or is damaged.
    """
    entry = registry.current()
    if entry is None:
        return None
    data = registry.bundle_bytes(entry.version)
    bundle = ModelBundle.from_bytes(data, source=str(registry.bundle_path(entry.version)))
    verifier.verify(
        data,
        entry.signature,
        name=name,
        version=entry.version,
        release=entry.release,
        bundle_name=bundle.manifest.name,
    )
    return bundle


def add_judged(
    settings: Settings,
    registry: Registry,
    candidate: ModelBundle,
    *,
    promote: bool,
    reason: str,
    figures: dict[str, float],
    signer: Signer,
) -> Entry:
    """Record a candidate the promotion gate judged: promoted (signed, the registry's current
    version, and published to the model topic) or rejected (kept unsigned, with ``reason``).

    Raises:
        ModelTopicError: a promoted candidate could not be published (it is recorded).
    """
    if not promote:
        return registry.add(candidate, status="rejected", reason=reason, metrics=figures)
    data = candidate.to_bytes()
    signature = signer.sign(data, name=settings.model.name, version=candidate.version)
    entry = registry.add(candidate, status="promoted", metrics=figures, signature=signature)
    publish_bundle(settings, candidate, signature, data=data)
    return entry
