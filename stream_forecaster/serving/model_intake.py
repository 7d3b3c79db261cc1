"""Every way a model reaches ``serve``, in one unit: the model folder (polled) and the
model topic (followed on its own thread); each bundle is checked and its inference engine
built off the main loop (:class:`~stream_forecaster.serving.hot_swap.EngineBuilder`), and
the loop takes the newest one between two batches.

A bundle refused on any path (unsigned, forged, damaged, incompatible) is logged with why
and reported once, by reason, through ``on_reject``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from stream_forecaster.model.bundle import BundleError, ModelBundle
from stream_forecaster.model.folder import ModelSource
from stream_forecaster.model.topic import ModelFollower
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.hot_swap import EngineBuilder
from stream_forecaster.settings import Settings

#: How often a wait for the first model checks for a stop.
_WAIT_STEP_S = 0.2


class ModelIntake:
    """The model folder, the model topic and the engine builder behind them.

    Args:
        settings: the model settings, the model topic, the inference threads.
        on_reject: told the reason of every bundle refused, whatever its path.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        settings: Settings,
        on_reject: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_reject = on_reject
        self._clock = clock
        self._poll_every_s = settings.processing.model_poll_s
        self._next_poll = clock()
        self.folder = ModelSource(settings.model, on_reject=self._rejected)
        self.builder = EngineBuilder(
            settings.processing.inference_threads,
            check=self.folder.check_fits,
            on_failure=self._failed,
        )
        self.follower = ModelFollower(
            settings, on_bundle=self.builder.submit, on_reject=self._rejected
        )

    def start(self) -> ModelIntake:
        self.builder.start()
        self.follower.start()
        return self

    def stop(self) -> None:
        self.follower.stop()
        self.builder.stop()

    def poll_folder(self) -> None:
        """When due (every ``SF_PROCESSING__MODEL_POLL_S``): a new bundle in the model folder
        goes to the engine builder."""
        now = self._clock()
        if now < self._next_poll:
            return
        self._next_poll = now + self._poll_every_s
        bundle = self.folder.poll()
        if bundle is not None:
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
            self.poll_folder()
            engine = self.take()
            if engine is not None:
                return engine
            stop.wait(_WAIT_STEP_S)
        return None

    def _rejected(self, reason: str, detail: str) -> None:
        self._on_reject(reason)

    def _failed(self, bundle: ModelBundle, error: Exception) -> None:
        """The builder refused a bundle (its check or its engine failed)."""
        self._on_reject(error.reason if isinstance(error, BundleError) else "damaged")
