"""stream-forecaster: one-step-ahead LSTM forecasts for live sensor feeds on Kafka.

The public API, by concern (each name is imported from its module on first use, so that
``import stream_forecaster`` and the command line start fast and a serving install never
needs the training libraries):

- configuration: :class:`Settings`, :func:`load_settings`, :class:`ConfigError`;
- the wire formats: :class:`Reading`, :func:`decode_reading`, :func:`encode_reading`,
  :class:`InvalidRecord`, :class:`Forecast`;
- models: :class:`ModelBundle`, :func:`untrained_bundle`, :class:`Registry`,
  :func:`build_model` (the Keras network; needs the ``[train]`` extra);
- serving: :class:`ForecastService`, :class:`BatchProcessor`, :class:`InferenceEngine`,
  :class:`WindowStore`, :class:`OnlineScorer`, :class:`ServeRecorder`;
- retraining: :class:`RetrainWorker` (needs the ``[train]`` extra);
- the command line: :func:`main`.

The packages, one concern each: ``settings``, ``wire``, ``kafka``, ``state``, ``data``,
``model``, ``scoring``, ``serving``, ``training``, ``retraining``, ``monitoring``,
``simulate``, ``cli`` (see the docs' architecture page).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stream_forecaster.version import __version__

if TYPE_CHECKING:
    from stream_forecaster.cli.commands import main
    from stream_forecaster.model.bundle import ModelBundle
    from stream_forecaster.model.network import build_model
    from stream_forecaster.model.registry import Registry
    from stream_forecaster.model.untrained import untrained_bundle
    from stream_forecaster.retraining.worker import RetrainWorker
    from stream_forecaster.scoring.online import OnlineScorer
    from stream_forecaster.serving.engine import InferenceEngine
    from stream_forecaster.serving.pipeline import BatchProcessor
    from stream_forecaster.serving.recorder import ServeRecorder
    from stream_forecaster.serving.service import ForecastService
    from stream_forecaster.settings import ConfigError, Settings, load_settings
    from stream_forecaster.state.windows import WindowStore
    from stream_forecaster.wire.errors import InvalidRecord
    from stream_forecaster.wire.forecasts import Forecast
    from stream_forecaster.wire.readings import Reading, decode_reading, encode_reading

#: Each public name and the module that defines it.
_PUBLIC = {
    "ConfigError": "stream_forecaster.settings",
    "Settings": "stream_forecaster.settings",
    "load_settings": "stream_forecaster.settings",
    "Reading": "stream_forecaster.wire.readings",
    "decode_reading": "stream_forecaster.wire.readings",
    "encode_reading": "stream_forecaster.wire.readings",
    "InvalidRecord": "stream_forecaster.wire.errors",
    "Forecast": "stream_forecaster.wire.forecasts",
    "ModelBundle": "stream_forecaster.model.bundle",
    "untrained_bundle": "stream_forecaster.model.untrained",
    "Registry": "stream_forecaster.model.registry",
    "build_model": "stream_forecaster.model.network",
    "ForecastService": "stream_forecaster.serving.service",
    "BatchProcessor": "stream_forecaster.serving.pipeline",
    "InferenceEngine": "stream_forecaster.serving.engine",
    "ServeRecorder": "stream_forecaster.serving.recorder",
    "WindowStore": "stream_forecaster.state.windows",
    "OnlineScorer": "stream_forecaster.scoring.online",
    "RetrainWorker": "stream_forecaster.retraining.worker",
    "main": "stream_forecaster.cli.commands",
}

__all__ = [
    "BatchProcessor",
    "ConfigError",
    "Forecast",
    "ForecastService",
    "InferenceEngine",
    "InvalidRecord",
    "ModelBundle",
    "OnlineScorer",
    "Reading",
    "Registry",
    "RetrainWorker",
    "ServeRecorder",
    "Settings",
    "WindowStore",
    "__version__",
    "build_model",
    "decode_reading",
    "encode_reading",
    "load_settings",
    "main",
    "untrained_bundle",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'stream_forecaster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
