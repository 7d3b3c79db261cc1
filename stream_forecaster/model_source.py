"""Where ``serve`` gets its model: a bundle file, or the newest bundle in a folder.

The source is checked at start-up and then every ``model_poll_s`` seconds; a new or
changed bundle is loaded, verified and, if it fits the configured features, returned
for the service to swap in between batches. A bundle that fails to load is logged and
counted, and the current model stays.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stream_forecaster.bundle import BundleError, ModelBundle, resolve_bundle
from stream_forecaster.metrics import ServiceMetrics
from stream_forecaster.settings import ModelSettings

log = logging.getLogger(__name__)


class ModelSource:
    """Finds and loads model bundles for serving.

    Args:
        settings: the model settings (path, and the features/target/window to insist on).
        metrics: counts load failures.
    """

    def __init__(self, settings: ModelSettings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._seen: tuple[Path, int, int] | None = None
        self._reported_missing = False

    def poll(self) -> ModelBundle | None:
        """A bundle not returned before, or ``None`` when nothing new (or nothing valid)."""
        try:
            path = resolve_bundle(self.settings.path)
        except BundleError as exc:
            if not self._reported_missing:
                log.warning("no model yet: %s; forecasts start once one arrives", exc)
                self._reported_missing = True
            return None
        stat = path.stat()
        identity = (path, stat.st_mtime_ns, stat.st_size)
        if identity == self._seen:
            return None
        self._seen = identity
        try:
            bundle = ModelBundle.load(path)
            self._check_fits(bundle)
        except BundleError as exc:
            self.metrics.model_load_failures.inc()
            log.error("cannot serve model bundle %s: %s", path, exc)
            return None
        self._reported_missing = False
        log.info(
            "loaded model %s (%s) from %s: features %s, target %s, window %d",
            bundle.version,
            bundle.manifest.name,
            path,
            list(bundle.manifest.features),
            bundle.manifest.target,
            bundle.manifest.window,
        )
        return bundle

    def _check_fits(self, bundle: ModelBundle) -> None:
        m, s = bundle.manifest, self.settings
        if s.features is not None and list(m.features) != s.features:
            raise BundleError(
                f"SF_MODEL__FEATURES is {s.features}, but model {m.version} reads "
                f"{list(m.features)}"
            )
        if s.target is not None and m.target != s.target:
            raise BundleError(
                f"SF_MODEL__TARGET is {s.target!r}, but model {m.version} forecasts {m.target!r}"
            )
        if "window" in s.model_fields_set and m.window != s.window:
            raise BundleError(
                f"SF_MODEL__WINDOW is {s.window}, but model {m.version} has window {m.window}"
            )
