"""The configuration of every command: one frozen settings model, its sections, and how it
is loaded from the environment (``SF_...``) and a config file.

- ``config``: :class:`Settings`, :func:`load_settings`, :class:`ConfigError`.
- ``section``: the base of every section (frozen, unknown keys refused).
- ``cluster``: the ``kafka`` and ``topics`` sections.
- ``serving``: ``processing``, ``windows``, ``state``, ``scoring``, ``metrics``.
- ``model``: ``model`` and ``retrain``.
"""

from stream_forecaster.settings.cluster import KafkaSettings, TopicsSettings
from stream_forecaster.settings.config import (
    CONFIG_FILE_ENV,
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    ConfigError,
    Settings,
    load_settings,
    read_config_file,
    setting_name,
)
from stream_forecaster.settings.model import ModelSettings, RetrainSettings
from stream_forecaster.settings.serving import (
    MetricsSettings,
    ProcessingSettings,
    ScoringSettings,
    StateSettings,
    WindowSettings,
)

__all__ = [
    "CONFIG_FILE_ENV",
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "ConfigError",
    "KafkaSettings",
    "MetricsSettings",
    "ModelSettings",
    "ProcessingSettings",
    "RetrainSettings",
    "ScoringSettings",
    "Settings",
    "StateSettings",
    "TopicsSettings",
    "WindowSettings",
    "load_settings",
    "read_config_file",
    "setting_name",
]
