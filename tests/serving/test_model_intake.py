"""The model intake: a bundle refused is counted by its reason whichever way it came (the
model folder, or the model topic through the engine builder)."""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import CollectorRegistry

from stream_forecaster.serving.model_intake import ModelIntake
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.settings import Settings
from tests.harness.bundles import untrained_bundle


def test_an_incompatible_bundle_is_counted_as_such_from_the_topic_and_the_folder(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry()
    recorder = ServeRecorder(registry)
    refused = threading.Event()

    def on_reject(reason: str) -> None:
        recorder.bundle_rejected(reason)
        refused.set()

    settings = Settings(model={"path": tmp_path, "features": ["a", "b", "c"]})
    intake = ModelIntake(settings, on_reject=on_reject)
    intake.builder.start()  # the model topic's follower hands its bundles to the builder
    try:
        intake.builder.submit(untrained_bundle())  # reads t, rh, p: not what is configured
        assert refused.wait(timeout=60)
        refused.clear()
        untrained_bundle(seed=8).save(tmp_path)
        intake.poll_folder()
        assert refused.is_set()
        assert intake.take() is None
    finally:
        intake.builder.stop()

    rejected = {"reason": "incompatible"}
    assert registry.get_sample_value("sf_model_bundles_rejected_total", rejected) == 2
    assert registry.get_sample_value("sf_model_load_failures_total") == 2
