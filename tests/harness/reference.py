"""What an uninterrupted single forecaster produces: the pipeline run in-process on the
same readings, the yardstick for the fault tests."""

from __future__ import annotations

import json

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.pipeline import BatchProcessor
from stream_forecaster.settings import Settings
from stream_forecaster.wire.records import Record


def reference_forecasts(
    bundle: ModelBundle, items: list[tuple[bytes, bytes]], batch: int = 256
) -> dict[tuple[str, int], dict[str, object]]:
    """(key, window_end_ts) -> forecast message, for ``items`` processed in order."""
    processor = BatchProcessor(Settings())
    processor.use_engine(InferenceEngine(bundle))
    records = [Record("in", 0, i, 0, key, value) for i, (key, value) in enumerate(items)]
    out: dict[tuple[str, int], dict[str, object]] = {}
    for start in range(0, len(records), batch):
        for forecast in processor.process(records[start : start + batch]).forecasts:
            message = json.loads(forecast.value or b"")
            out[(message["key"], message["window_end_ts"])] = message
    return out
