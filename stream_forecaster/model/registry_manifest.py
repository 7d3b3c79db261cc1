"""The content of ``registry.json``: every version with its status, figures and signature,
the current one and the promotion history; and the pure changes to it (promote, roll back).
:class:`~stream_forecaster.model.registry.Registry` reads, locks and writes it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stream_forecaster.model.signing import PROMOTE

Status = Literal["promoted", "rejected", "candidate"]


class RegistryError(ValueError):
    """The registry cannot do what was asked (unknown version, nothing to roll back to, ...);
    the message names what was received and what exists."""


class Entry(BaseModel):
    """One model version in the registry.

    Attributes:
        version: the bundle's version id.
        file: the bundle's file name, relative to the registry folder.
        created_at: when the bundle was made (its training time, RFC 3339).
        name: the model name recorded in the bundle.
        status: ``promoted`` (went live at some point), ``rejected`` (failed the
            promotion gate) or ``candidate`` (not judged yet).
        reason: why it was rejected (or any other note).
        metrics: validation figures, e.g. ``holdout_mae``, ``current_mae``,
            ``persistence_mae``.
        signature: the signature of its release (see
            :mod:`~stream_forecaster.model.signing`), or ``None``: only promoted versions
            are signed.
        release: what the signature was made for: ``promote``, or ``rollback from <v>``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str = Field(min_length=1)
    file: str = Field(min_length=1)
    created_at: str
    name: str
    status: Status
    reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    signature: str | None = None
    release: str = PROMOTE


class Manifest(BaseModel):
    """The content of ``registry.json``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: Literal["stream-forecaster-registry"] = "stream-forecaster-registry"
    format_version: Literal[1] = 1
    current: str | None = None
    history: tuple[str, ...] = ()
    entries: tuple[Entry, ...] = ()

    def find(self, version: str) -> Entry | None:
        return next((e for e in self.entries if e.version == version), None)


def with_signature(
    entries: tuple[Entry, ...],
    version: str,
    signature: str | None,
    release: str | None,
    **update: object,
) -> tuple[Entry, ...]:
    if signature is not None:
        update["signature"] = signature
        update["release"] = release or PROMOTE
    if not update:
        return entries
    return tuple(e.model_copy(update=update) if e.version == version else e for e in entries)


def promoted(manifest: Manifest, version: str, signature: str | None) -> Manifest:
    entries = with_signature(manifest.entries, version, signature, PROMOTE, status="promoted")
    history = manifest.history
    if manifest.current != version or not history or history[-1] != version:
        history = (*history, version)
    return manifest.model_copy(update={"entries": entries, "current": version, "history": history})


def previous_version(manifest: Manifest, path: Path) -> str:
    if not manifest.entries:
        raise RegistryError(f"the registry {path} is empty: no model versions to roll back to")
    if len(manifest.history) < 2:
        only = manifest.history[-1] if manifest.history else "none"
        raise RegistryError(
            f"no previous version to roll back to in {path}: the promotion history holds "
            f"only {only} (versions: {', '.join(e.version for e in manifest.entries)})"
        )
    return manifest.history[-2]
