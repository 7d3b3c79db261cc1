"""Where ``serve`` gets its model from disk: a bundle file, or a registry folder.

``SF_MODEL__PATH`` names a bundle file, or a folder. A folder with a ``registry.json``
(see :mod:`stream_forecaster.model.registry`) serves its ``current`` version; a folder without
one (a deployment from before the registry) serves its newest ``*.sfmodel`` file.

The source is checked at start-up and then every ``model_poll_s`` seconds; a new or
changed bundle is loaded, verified and, if it fits the configured features, returned
for the service to swap in between batches. With verification on (trusted keys or a
secret set, see :mod:`stream_forecaster.model.signing`), the bundle must carry a valid
signature of its release: the one recorded in ``registry.json``, or else a sidecar file
``<bundle file>.sig``. A bundle that fails to load (unsigned, forged, damaged,
incompatible, oversized) is logged and counted, and the current model stays.

Only regular files inside the folder are read, each bounded (:mod:`~stream_forecaster.model.files`).

"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from stream_forecaster.model.bundle import (
    BundleError,
    IncompatibleBundle,
    ModelBundle,
    resolve_bundle,
)
from stream_forecaster.model.files import UnsafeName, inside, read_regular_file
from stream_forecaster.model.registry import MANIFEST_NAME, Registry, RegistryError
from stream_forecaster.model.signing import (
    PROMOTE,
    Offer,
    Verifier,
    sidecar_signature,
)
from stream_forecaster.model.weights import MAX_BUNDLE_BYTES
from stream_forecaster.settings import ModelSettings

log = logging.getLogger(__name__)


class ModelSource:
    """Finds and loads model bundles for serving.

    Args:
        settings: the model settings (path, name, keys, and the features/target/window to
            insist on).
        on_reject: told of each rejected bundle, as ``(reason, detail)`` with reason
            ``unsigned``, ``forged``, ``other_model``, ``damaged``, ``oversized`` or
            ``incompatible``.
        verifier: what signatures are trusted; default: the one ``settings`` describe.

    Raises:
        KeyFileError: a key setting names no readable key.
    """

    def __init__(
        self,
        settings: ModelSettings,
        on_reject: Callable[[str, str], None] = lambda _reason, _detail: None,
        verifier: Verifier | None = None,
    ) -> None:
        self.settings = settings
        self.on_reject = on_reject
        self.verifier = verifier if verifier is not None else Verifier.from_settings(settings)
        self._seen: object = None  # what was last looked at: not looked at again
        self._reported_missing = False
        self._reported_stray = False

    def poll(self) -> Offer | None:
        """A bundle not returned before, or ``None`` when nothing new (or nothing valid)."""
        try:
            path, signature, release = self._locate()
            stat = path.stat()
        except UnsafeName as exc:  # refused, not merely missing
            if self._seen != str(exc):
                self._seen = str(exc)
                self._rejected(self.settings.path / MANIFEST_NAME, exc)
            return None
        except (BundleError, RegistryError, OSError) as exc:
            if not self._reported_missing:
                log.warning("no model yet: %s; forecasts start once one arrives", exc)
                self._reported_missing = True
            return None
        identity = (path, stat.st_mtime_ns, stat.st_size, signature, release)
        if identity == self._seen:
            return None
        self._seen = identity
        try:
            data = read_regular_file(path, MAX_BUNDLE_BYTES)
            bundle = ModelBundle.from_bytes(data, source=str(path))
            self.verifier.verify(
                data,
                signature,
                name=self.settings.name,
                version=bundle.version,
                release=release,
                bundle_name=bundle.manifest.name,
            )
            self.check_fits(bundle)
        except BundleError as exc:
            self._rejected(path, exc)
            return None
        self._reported_missing = False
        log.info(
            "loaded model %s (%s) from %s%s: features %s, target %s, window %d",
            bundle.version,
            bundle.manifest.name,
            path,
            f", {release}, signature verified" if self.verifier.on else "",
            list(bundle.manifest.features),
            bundle.manifest.target,
            bundle.manifest.window,
        )
        return Offer(bundle, release)

    def _locate(self) -> tuple[Path, str | None, str]:
        """The bundle file to serve, the signature that comes with it and its release."""
        folder = self.settings.path
        if folder.is_dir() and (folder / MANIFEST_NAME).is_file():
            registry = Registry(folder)
            entry = registry.current()
            if entry is None:
                raise BundleError(
                    f"registry {folder / MANIFEST_NAME} has no current version yet "
                    f"(versions: {', '.join(e.version for e in registry.entries()) or 'none'})"
                )
            stray = registry.unregistered()
            if stray and not self._reported_stray:
                log.warning(
                    "%s: %s not in %s: never served (`train --out` registers a new bundle; "
                    "`stream-forecaster models list` shows the registry)",
                    folder,
                    ", ".join(p.name for p in stray),
                    MANIFEST_NAME,
                )
                self._reported_stray = True
            path = inside(folder, entry.file)
            return path, entry.signature or sidecar_signature(path), entry.release
        path = resolve_bundle(folder)
        return path, sidecar_signature(path), PROMOTE

    def _rejected(self, path: Path, exc: BundleError) -> None:
        log.error("cannot serve model bundle %s (%s): %s", path, exc.reason, exc)
        self.on_reject(exc.reason, f"{path}: {exc}")

    def check_fits(self, bundle: ModelBundle) -> None:
        """Refuse a bundle that does not read the configured features, forecast the
        configured target or have the configured window.

        Raises:
            IncompatibleBundle: it does not fit; the message names the setting.
        """
        m, s = bundle.manifest, self.settings
        if s.features is not None and list(m.features) != s.features:
            raise IncompatibleBundle(
                f"SF_MODEL__FEATURES is {s.features}, but model {m.version} reads "
                f"{list(m.features)}"
            )
        if s.target is not None and m.target != s.target:
            raise IncompatibleBundle(
                f"SF_MODEL__TARGET is {s.target!r}, but model {m.version} forecasts {m.target!r}"
            )
        if "window" in s.model_fields_set and m.window != s.window:
            raise IncompatibleBundle(
                f"SF_MODEL__WINDOW is {s.window}, but model {m.version} has window {m.window}"
            )
