"""Hot swap: inference engines are prepared off the main loop, which swaps between batches.

Building an engine compiles every batch bucket with XLA (seconds of CPU). So engines are
double-buffered: the first bundle of a given shape builds a new engine; after a swap the
previous engine is idle, and the next bundle of the same shape is loaded into it by
assigning its weights (milliseconds, no compilation). Bundles from the model folder and
from the model topic are handed to one builder thread; the main loop takes the newest
ready engine between batches, so consumption never pauses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable

from stream_forecaster.bundle import ModelBundle
from stream_forecaster.engine import InferenceEngine

log = logging.getLogger(__name__)

_NICE = 15


class EngineBuilder:
    """Builds :class:`InferenceEngine` objects on a background thread.

    Args:
        max_batch: passed to each engine (the buckets it compiles).
        check: raises ``ValueError`` (e.g. ``BundleError``) for a bundle that must not be
            served; runs before building.
        on_failure: told ``(bundle, error)`` when a bundle is refused or fails to build.
    """

    def __init__(
        self,
        max_batch: int,
        check: Callable[[ModelBundle], None],
        on_failure: Callable[[ModelBundle, Exception], None],
    ) -> None:
        self.max_batch = max_batch
        self.check = check
        self.on_failure = on_failure
        self._queue: queue.Queue[ModelBundle | None] = queue.Queue()
        self._spare_for: ModelBundle | None = None  # build an idle engine of its shape
        self._lock = threading.Lock()
        self._ready: InferenceEngine | None = None
        self._wanted: str | None = None  # the version most recently submitted
        self.serving: str | None = None
        self._serving_engine: InferenceEngine | None = None
        self._idle: InferenceEngine | None = None  # no longer served: can be reloaded
        self._thread = threading.Thread(target=self._run, name="engine-builder", daemon=True)

    def start(self) -> EngineBuilder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, bundle: ModelBundle) -> None:
        """Build an engine for ``bundle`` unless it is already served or on its way.
        Thread-safe (the model topic's follower calls it from its own thread)."""
        with self._lock:
            if bundle.version in (self.serving, self._wanted):
                return
            self._wanted = bundle.version
        self._queue.put(bundle)

    def take(self) -> InferenceEngine | None:
        """The newest engine built since the last call, if any (main loop, between
        batches)."""
        with self._lock:
            engine, self._ready = self._ready, None
            if engine is not None:
                self.serving = engine.version
                if self._serving_engine is not None and self._serving_engine is not engine:
                    self._idle = self._serving_engine
                elif self._idle is None:
                    # The first engine: compile a spare one now, at low priority, so that
                    # even the first swap is a reload.
                    self._spare_for = engine.bundle
                    self._queue.put(engine.bundle)
                self._serving_engine = engine
            return engine

    def _run(self) -> None:
        # A compile must not take CPU from the batches being served: on Linux a thread can
        # have its own nice value (tracing and XLA compilation run on this thread).
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
        while (bundle := self._queue.get()) is not None:
            if bundle is self._spare_for:
                self._build_spare(bundle)
                continue
            if bundle.version != self._wanted:
                continue  # a newer one was submitted meanwhile
            try:
                self.check(bundle)
                with self._lock:
                    idle, self._idle = self._idle, None
                if idle is not None and idle.fits(bundle):
                    idle.reload(bundle)
                    engine = idle
                else:
                    engine = InferenceEngine(bundle, self.max_batch)
            except (ValueError, RuntimeError) as exc:
                with self._lock:
                    if self._wanted == bundle.version:
                        self._wanted = None
                log.error("cannot serve model %s: %s", bundle.version, exc)
                self.on_failure(bundle, exc)
                continue
            with self._lock:
                self._ready = engine

    def _build_spare(self, bundle: ModelBundle) -> None:
        self._spare_for = None
        try:
            spare = InferenceEngine(bundle, self.max_batch)
        except (ValueError, RuntimeError) as exc:  # the served one was built: unexpected
            log.warning("no spare inference engine: %s", exc)
            return
        with self._lock:
            if self._idle is None:
                self._idle = spare
