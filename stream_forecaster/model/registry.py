"""The versioned model registry: a folder of bundle files and a ``registry.json`` manifest.

Layout of the folder (``SF_MODEL__PATH``)::

    <version>.sfmodel      one bundle per version (promoted, rejected or candidate)
    registry.json          every version with its status, validation figures and
                           signature; ``current`` (the version served) and ``history``
                           (promoted versions in order, for rollback)
    registry.lock          serialises writers (retrain, ``models promote``) with flock

Every file is written atomically: a temporary file in the same folder, fsync, then
``os.replace``. A bundle file is written before the manifest that names it, so a reader
never sees a manifest entry without its file.

A folder without ``registry.json`` (a deployment from before the registry: just
``*.sfmodel`` files) reads as if every file were a promoted version, in file-name order,
the last one current, exactly what ``serve`` has always picked. The first write turns
that view into a real ``registry.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from stream_forecaster.model.bundle import BUNDLE_SUFFIX, BundleError, ModelBundle, atomic_write
from stream_forecaster.model.files import inside, read_regular_file
from stream_forecaster.model.registry_manifest import (
    Entry,
    Manifest,
    RegistryError,
    Status,
    previous_version,
    promoted,
    with_signature,
)
from stream_forecaster.model.signing import sidecar_signature
from stream_forecaster.model.weights import MAX_BUNDLE_BYTES

log = logging.getLogger(__name__)

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "Entry",
    "Manifest",
    "Registry",
    "RegistryError",
    "Status",
    "current_file",
]

MANIFEST_NAME: Final = "registry.json"
LOCK_NAME: Final = "registry.lock"


class Registry:
    """A registry folder.

    Nothing is written until a method that changes the registry is called; reading a
    folder that does not exist gives an empty registry.

    Args:
        path: the registry folder (``SF_MODEL__PATH``).

    Raises:
        RegistryError: ``path`` is a file (a single bundle), not a folder.
    """

    def __init__(self, path: Path) -> None:
        if path.is_file():
            raise RegistryError(
                f"SF_MODEL__PATH {path} is a bundle file; the registry needs a folder "
                "(set SF_MODEL__PATH to the folder holding the *.sfmodel files)"
            )
        self.path = path
        self.manifest_path = path / MANIFEST_NAME

    # -- reading ---------------------------------------------------------------------------

    def has_manifest(self) -> bool:
        """Whether the folder holds a ``registry.json`` (else it is read as plain files)."""
        return self.manifest_path.is_file()

    def entries(self) -> list[Entry]:
        """Every version, in the order they were added."""
        return list(self._read().entries)

    def current(self) -> Entry | None:
        """The version served, or ``None`` when nothing was promoted yet."""
        manifest = self._read()
        return None if manifest.current is None else manifest.find(manifest.current)

    def history(self) -> list[str]:
        """The promoted versions in the order they went live (the last one is current)."""
        return list(self._read().history)

    def previous(self) -> Entry:
        """The version a rollback would go back to.

        Raises:
            RegistryError: the registry is empty, or nothing was promoted before the current.
        """
        manifest = self._read()
        return self._entry(manifest, previous_version(manifest, self.path))

    def entry(self, version: str) -> Entry:
        """The entry of ``version``.

        Raises:
            RegistryError: no such version; the message lists those that exist.
        """
        return self._entry(self._read(), version)

    def unregistered(self) -> list[Path]:
        """Bundle files of a folder with a ``registry.json`` that it does not name (copied
        in by hand): never served. Without ``registry.json`` every file counts."""
        if not self.has_manifest():
            return []
        named = {e.file for e in self._read().entries}
        return sorted(p for p in self.path.glob(f"*{BUNDLE_SUFFIX}") if p.name not in named)

    def bundle_path(self, version: str) -> Path:
        """The bundle file of ``version``."""
        return inside(self.path, self.entry(version).file)

    def bundle_bytes(self, version: str) -> bytes:
        """The exact bytes of ``version``'s bundle file (what its signature covers).

        Raises:
            RegistryError: no such version.
            BundleError: the file cannot be read.
        """
        path = self.bundle_path(version)
        try:
            return read_regular_file(path, MAX_BUNDLE_BYTES)
        except BundleError as exc:
            raise type(exc)(f"model bundle of version {version}: {exc}") from None

    def load(self, version: str) -> ModelBundle:
        """The bundle of ``version``, its checksum verified.

        Raises:
            RegistryError: no such version.
            BundleError: the file is missing, damaged or not a bundle.
        """
        path = self.bundle_path(version)
        return ModelBundle.from_bytes(self.bundle_bytes(version), source=str(path))

    # -- writing ---------------------------------------------------------------------------

    def add(
        self,
        bundle: ModelBundle,
        *,
        status: Status = "candidate",
        reason: str | None = None,
        metrics: dict[str, float] | None = None,
        signature: str | None = None,
    ) -> Entry:
        """Write ``bundle`` as ``<version>.sfmodel`` and record it.

        ``status="promoted"`` also makes it current (as :meth:`promote` does).

        Args:
            bundle: the model.
            status: see :class:`Entry`.
            reason: why it was rejected.
            metrics: its validation figures.
            signature: the signature of its promotion (only for ``status="promoted"``).

        Raises:
            RegistryError: the version is already in the registry.
        """
        with self._locked():
            manifest = self._read()
            if manifest.find(bundle.version) is not None:
                raise RegistryError(
                    f"version {bundle.version} is already in the registry {self.path}"
                )
            file_name = f"{bundle.version}{BUNDLE_SUFFIX}"
            atomic_write(self.path / file_name, bundle.to_bytes())
            entry = Entry(
                version=bundle.version,
                file=file_name,
                created_at=bundle.manifest.training.created_at,
                name=bundle.manifest.name,
                status=status,
                reason=reason,
                metrics=dict(metrics or {}),
                signature=signature,
            )
            manifest = manifest.model_copy(update={"entries": (*manifest.entries, entry)})
            if status == "promoted":
                manifest = promoted(manifest, bundle.version, None)
            self._write(manifest)
            log.info("registry %s: added %s (%s)", self.path, bundle.version, status)
            return manifest.find(bundle.version) or entry

    def promote(self, version: str, *, signature: str | None = None) -> Entry:
        """Make ``version`` the one served: status ``promoted``, current, end of the history.

        Promoting the current version changes nothing (but ``signature``).

        Args:
            version: a version in the registry.
            signature: record this signature for it (e.g. signed now by
                ``models promote``); ``None`` keeps the recorded one.

        Raises:
            RegistryError: no such version.
        """
        with self._locked():
            manifest = self._read()
            self._entry(manifest, version)
            manifest = promoted(manifest, version, signature)
            self._write(manifest)
            log.info("registry %s: %s is current", self.path, version)
            return self._entry(manifest, version)

    def rollback(self, *, signature: str | None = None, release: str | None = None) -> Entry:
        """Go back to the version promoted before the current one; the current one leaves the
        history (a second rollback goes back one more).

        Args:
            signature: record this signature for the version gone back to; ``None`` keeps
                the recorded one.
            release: what ``signature`` was made for (``rollback from <current>``).

        Raises:
            RegistryError: the registry is empty, or there is no previous version.
        """
        with self._locked():
            manifest = self._read()
            target = previous_version(manifest, self.path)
            rolled_back = manifest.history[-1]
            manifest = manifest.model_copy(
                update={
                    "current": target,
                    "history": manifest.history[:-1],
                    "entries": with_signature(manifest.entries, target, signature, release),
                }
            )
            self._write(manifest)
            log.info("registry %s: rolled back from %s to %s", self.path, rolled_back, target)
            return self._entry(manifest, target)

    # -- internals -------------------------------------------------------------------------

    def _entry(self, manifest: Manifest, version: str) -> Entry:
        entry = manifest.find(version)
        if entry is None:
            known = [e.version for e in manifest.entries]
            listing = ", ".join(known[-10:]) if known else "none"
            more = f" (and {len(known) - 10} older)" if len(known) > 10 else ""
            raise RegistryError(
                f"no version {version!r} in the registry {self.path}; it holds: {listing}{more}"
            )
        return entry

    def _read(self) -> Manifest:
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._adopt_files()
        except OSError as exc:
            raise RegistryError(f"cannot read {self.manifest_path}: {exc.strerror}") from None
        try:
            return Manifest.model_validate_json(text)
        except ValidationError as exc:
            raise RegistryError(f"{self.manifest_path} is not a valid registry: {exc}") from None

    def _adopt_files(self) -> Manifest:
        """The registry a folder of plain bundle files stands for."""
        if not self.path.is_dir():
            return Manifest()
        entries: list[Entry] = []
        for path in sorted(self.path.glob(f"*{BUNDLE_SUFFIX}")):
            try:
                data = read_regular_file(path, MAX_BUNDLE_BYTES)
                bundle = ModelBundle.from_bytes(data, source=str(path))
            except BundleError as exc:
                log.warning("registry %s: skipping %s: %s", self.path, path.name, exc)
                continue
            if any(e.version == bundle.version for e in entries):
                continue
            signature = sidecar_signature(path)
            entries.append(
                Entry(
                    version=bundle.version,
                    file=path.name,
                    created_at=bundle.manifest.training.created_at,
                    name=bundle.manifest.name,
                    status="promoted",
                    metrics=dict(bundle.manifest.training.metrics),
                    signature=signature or None,
                )
            )
        versions = tuple(e.version for e in entries)
        return Manifest(
            current=versions[-1] if versions else None, history=versions, entries=tuple(entries)
        )

    def _write(self, manifest: Manifest) -> None:
        atomic_write(self.manifest_path, (manifest.model_dump_json(indent=2) + "\n").encode())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / LOCK_NAME).open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def current_file(path: Path) -> Path:
    """The current model at ``path``, the same for every command: a bundle file itself; in
    a folder, the registry's current version (without ``registry.json``, the newest file).

    Raises:
        BundleError: nothing there, or no version promoted yet.
    """
    if path.is_file():
        return path
    if not path.exists():
        raise BundleError(f"model bundle {path} does not exist")
    registry = Registry(path)
    entry = registry.current()
    if entry is None:
        versions = ", ".join(e.version for e in registry.entries()) or "none"
        raise BundleError(f"no current model in {path} (versions: {versions})")
    return inside(path, entry.file)
