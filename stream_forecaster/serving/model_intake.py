"""Every way a model reaches ``serve``, in one unit: the model folder (read on its own
thread) and the model topic (followed on its own thread); each offered bundle passes the
release rule, then its inference engine is built off the main loop
(:class:`~stream_forecaster.serving.hot_swap.EngineBuilder`), and the loop takes the newest
one between two batches. The main loop never touches a file or the model topic.

The release rule: a bundle older than the one accepted last (by its creation time) is
refused as ``older_version`` unless it comes as ``rollback from <that version>``, a release
only ``models rollback`` makes (signed, with verification on). A bundle refused on any path
(unsigned, forged, other_model, older_version, damaged, oversized, incompatible) is logged
with why and reported once, by reason, through ``on_reject``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from stream_forecaster.model.bundle import BundleError, ModelBundle
from stream_forecaster.model.folder import ModelSource
from stream_forecaster.model.signing import Offer, Verifier, rolls_back_from
from stream_forecaster.model.topic import ModelFollower
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.hot_swap import EngineBuilder
from stream_forecaster.settings import Settings

log = logging.getLogger(__name__)

#: How often a wait for the first model checks for a stop.
_WAIT_STEP_S = 0.2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ModelIntake:
    """The model folder, the model topic, the release rule and the engine builder.

    Args:
        settings: the model settings, the model topic, the inference threads.
        on_reject: told the reason of every bundle refused, whatever its path.

    Raises:
        KeyFileError: a key setting names no readable key (at start-up, before anything
            runs).
    """

    def __init__(self, settings: Settings, on_reject: Callable[[str], None]) -> None:
        self._on_reject = on_reject
        self._poll_every_s = settings.processing.model_poll_s
        self.verifier = Verifier.from_settings(settings.model)
        self.folder = ModelSource(settings.model, on_reject=self._rejected, verifier=self.verifier)
        self.builder = EngineBuilder(
            settings.processing.inference_threads,
            check=self.folder.check_fits,
            on_failure=self._failed,
        )
        self.follower = ModelFollower(
            settings, on_bundle=self.offer, on_reject=self._rejected, verifier=self.verifier
        )
        self._lock = threading.Lock()
        self._accepted: ModelBundle | None = None
        self._before: ModelBundle | None = None  # accepted before it (back to it if it fails)
        self._stop = threading.Event()
        self._folder_thread = threading.Thread(
            target=self._watch_folder, name="model-folder", daemon=True
        )

    def start(self) -> ModelIntake:
        self.builder.start()
        self.follower.start()
        self._folder_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.follower.stop()
        if self._folder_thread.is_alive():
            self._folder_thread.join(timeout=5)
        self.builder.stop()

    def poll_folder(self) -> None:
        """Read the model folder once: a new bundle there is offered."""
        offer = self.folder.poll()
        if offer is not None:
            self.offer(offer)

    def offer(self, offer: Offer) -> None:
        """Apply the release rule to a verified bundle; build its engine if it passes.
        Thread-safe (the folder and the topic offer from their own threads)."""
        bundle = offer.bundle
        with self._lock:
            current = self._accepted
            if current is not None and bundle.version == current.version:
                return
            if (
                current is not None
                and _created(bundle) < _created(current)
                and not rolls_back_from(offer.release, current.version)
            ):
                refused = current
            else:
                refused = None
                self._before, self._accepted = current, bundle
        if refused is not None:
            log.error(
                "refused model %s (created %s, %s): it is older than %s (created %s), the one "
                "served; going back needs `stream-forecaster models rollback`, which signs a "
                "rollback from %s",
                bundle.version,
                bundle.manifest.training.created_at,
                offer.release[:80],
                refused.version,
                refused.manifest.training.created_at,
                refused.version,
            )
            self._on_reject("older_version")
            return
        self.builder.submit(bundle)

    def take(self) -> InferenceEngine | None:
        """The newest engine built since the last call, if any."""
        return self.builder.take()

    def wait_for_first(
        self, stop: threading.Event, alive: Callable[[], None]
    ) -> InferenceEngine | None:
        """Wait for a first engine; ``None`` when ``stop`` was set first.

        Args:
            stop: ends the wait.
            alive: called on every turn (the wait is the main loop's, for ``/healthz``).
        """
        while not stop.is_set():
            alive()
            engine = self.take()
            if engine is not None:
                return engine
            stop.wait(_WAIT_STEP_S)
        return None

    def _watch_folder(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_folder()
            except Exception:  # the thread must not die: the next poll may succeed
                log.exception("reading the model folder failed")
            self._stop.wait(self._poll_every_s)

    def _rejected(self, reason: str, detail: str) -> None:
        self._on_reject(reason)

    def _failed(self, bundle: ModelBundle, error: Exception) -> None:
        """The builder refused a bundle (its check or its engine failed)."""
        with self._lock:
            if self._accepted is not None and self._accepted.version == bundle.version:
                self._accepted = self._before
        self._on_reject(error.reason if isinstance(error, BundleError) else "damaged")


def _created(bundle: ModelBundle) -> datetime:
    text = bundle.manifest.training.created_at
    try:
        created = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:  # the manifest checks the format; an unreadable time counts as oldest
        return _EPOCH
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)
