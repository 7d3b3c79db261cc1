"""Hot swap: inference engines are prepared off the main loop, which swaps between batches.

Bundles from the model folder and from the model topic are handed to one builder thread,
which checks each one and builds its engine (an ONNX graph and a Runtime session: a few
milliseconds of CPU, at low priority). The main loop takes the newest ready engine between
two batches, so consumption never pauses and no record waits for a build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.serving.engine import InferenceEngine

log = logging.getLogger(__name__)

_NICE = 15


class EngineBuilder:
    """Builds :class:`InferenceEngine` objects on a background thread.

    Args:
        threads: passed to each engine (ONNX Runtime threads per call).
        check: raises ``ValueError`` (e.g. ``BundleError``) for a bundle that must not be
            served; runs before building.
        on_failure: told ``(bundle, error)`` when a bundle is refused or fails to build.
    """

    def __init__(
        self,
        threads: int,
        check: Callable[[ModelBundle], None],
        on_failure: Callable[[ModelBundle, Exception], None],
    ) -> None:
        self.threads = threads
        self.check = check
        self.on_failure = on_failure
        self._queue: queue.Queue[ModelBundle | None] = queue.Queue()
        self._lock = threading.Lock()
        self._ready: InferenceEngine | None = None
        self._wanted: str | None = None  # the version most recently submitted
        self.serving: str | None = None
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
            return engine

    def _run(self) -> None:
        # Building must not take CPU from the batches being served: on Linux a thread can
        # have its own nice value.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
        while (bundle := self._queue.get()) is not None:
            if bundle.version != self._wanted:
                continue  # a newer one was submitted meanwhile
            try:
                self.check(bundle)
                engine = InferenceEngine(bundle, threads=self.threads)
            except (ValueError, RuntimeError) as exc:
                with self._lock:
                    if self._wanted == bundle.version:
                        self._wanted = None
                log.error("cannot serve model %s: %s", bundle.version, exc)
                self.on_failure(bundle, exc)
                continue
            with self._lock:
                self._ready = engine
