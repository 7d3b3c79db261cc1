"""The model intake: a bundle refused is counted by its reason whichever way it came (the
model folder, or the model topic through the engine builder); the release rule (no older
version but by a rollback from the current one); the folder read on its own thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from stream_forecaster.model.signing import PROMOTE, Offer, rollback_from
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


# -- the release rule and the folder's own thread ----------------------------------------------


class Refusals:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def started_intake(tmp_path: Path) -> tuple[ModelIntake, Refusals, list[str]]:
    refusals = Refusals()
    intake = ModelIntake(Settings(model={"path": tmp_path / "none"}), on_reject=refusals)
    submitted: list[str] = []
    intake.builder.submit = lambda bundle: submitted.append(bundle.version)  # type: ignore[method-assign]
    return intake, refusals, submitted


def test_an_older_version_is_refused_unless_it_is_a_rollback_from_the_current_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new, newer = (
        untrained_bundle(seed=s, created_at=f"2026-0{s}-01T00:00:00Z") for s in (1, 2, 3)
    )
    intake, refusals, submitted = started_intake(tmp_path)

    intake.offer(Offer(new, PROMOTE))
    intake.offer(Offer(old, PROMOTE))  # a replay of an older signed release
    intake.offer(Offer(old, rollback_from(newer.version)))  # a rollback from another version
    assert refusals.reasons == ["older_version", "older_version"]
    assert f"refused model {old.version}" in caplog.text and "models rollback" in caplog.text

    intake.offer(Offer(old, rollback_from(new.version)))  # what `models rollback` sends
    intake.offer(Offer(newer, PROMOTE))  # newer is always fine
    intake.offer(Offer(newer, PROMOTE))  # the same version twice: built once
    assert submitted == [new.version, old.version, newer.version]
    assert len(refusals.reasons) == 2


def test_a_version_that_fails_to_build_does_not_become_the_one_to_compare_with(
    tmp_path: Path,
) -> None:
    first, broken = (untrained_bundle(seed=s, created_at=f"2026-0{s}-01T00:00:00Z") for s in (1, 3))
    middle = untrained_bundle(seed=2, created_at="2026-02-01T00:00:00Z")
    intake, refusals, submitted = started_intake(tmp_path)
    intake.offer(Offer(first, PROMOTE))
    intake.offer(Offer(broken, PROMOTE))
    intake._failed(broken, ValueError("no engine"))  # what the builder reports
    intake.offer(Offer(middle, PROMOTE))  # newer than what is served: taken
    assert submitted == [first.version, broken.version, middle.version]
    assert refusals.reasons == ["damaged"]


def test_the_model_folder_is_read_on_its_own_thread_never_the_main_loop(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "models"
    folder.mkdir()
    os.mkfifo(folder / "stuck.sfmodel")  # a FIFO with no writer: a blocking read never ends
    refusals = Refusals()
    settings = Settings(model={"path": folder}, processing={"model_poll_s": 0.05})
    intake = ModelIntake(settings, on_reject=refusals)
    readers: list[str] = []
    poll = intake.folder.poll

    def recorded_poll() -> Offer | None:
        readers.append(threading.current_thread().name)
        return poll()

    intake.folder.poll = recorded_poll  # type: ignore[method-assign]
    intake.start()
    try:
        stop = threading.Event()
        turns = 0

        def alive() -> None:
            nonlocal turns
            turns += 1
            if len(readers) >= 3:
                stop.set()

        assert intake.wait_for_first(stop, alive) is None  # the main loop kept turning
    finally:
        intake.stop()
    assert set(readers) == {"model-folder"} and turns >= 1
    assert "damaged" in refusals.reasons  # the FIFO is refused, not read
