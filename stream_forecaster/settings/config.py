"""The complete configuration: one frozen pydantic-settings model, and how it is loaded.

Every setting can come from the environment (prefix ``SF_``, nested sections joined with
``__``, e.g. ``SF_KAFKA__BOOTSTRAP_SERVERS``) or from a TOML/JSON config file; the
environment wins over the file, the file wins over the defaults. An invalid value raises
:class:`ConfigError`, whose message names the setting as the user wrote it.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from stream_forecaster.settings.cluster import KafkaSettings, TopicsSettings
from stream_forecaster.settings.model import ModelSettings, RetrainSettings
from stream_forecaster.settings.serving import (
    MetricsSettings,
    ProcessingSettings,
    ScoringSettings,
    StateSettings,
    WindowSettings,
)

ENV_PREFIX = "SF_"
ENV_NESTED_DELIMITER = "__"
CONFIG_FILE_ENV = "SF_CONFIG_FILE"


class ConfigError(ValueError):
    """A setting is missing, malformed or inconsistent; the message names it."""


class Settings(BaseSettings):
    """The complete configuration of a stream-forecaster process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicsSettings = TopicsSettings()
    model: ModelSettings = ModelSettings()
    processing: ProcessingSettings = ProcessingSettings()
    windows: WindowSettings = WindowSettings()
    state: StateSettings = StateSettings()
    retrain: RetrainSettings = RetrainSettings()
    scoring: ScoringSettings = ScoringSettings()
    metrics: MetricsSettings = MetricsSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log verbosity (one line per event, to stderr)."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file arrives as init kwargs (see load_settings); the environment
        # overrides it, so that one variable can adjust a shared file.
        return env_settings, init_settings

    def changelog_topic(self) -> str:
        """The window changelog topic: configured, or ``<group_id>.<input>.windows``."""
        return self.state.changelog_topic or (
            f"{self.processing.group_id}.{self.topics.input}.windows"
        )

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain JSON data, secrets replaced by ``**********``."""
        data: dict[str, Any] = self.model_dump(mode="json")
        return data


def setting_name(loc: tuple[str | int, ...]) -> str:
    """The environment variable that sets the value at ``loc`` (``('model', 'window')``)."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part) for part in loc).upper()


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON (anything else) config file into nested dicts.

    Args:
        path: the file to read.

    Raises:
        ConfigError: the file is missing, unreadable or not valid TOML/JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"config file {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table/object at the top level")
    return data


def load_settings(config_file: Path | None = None) -> Settings:
    """Build the settings from the environment and, optionally, a config file.

    Args:
        config_file: TOML or JSON file with the same nested structure as the settings
            (``[kafka] bootstrap_servers = "..."``). Defaults to ``$SF_CONFIG_FILE`` if set.

    Raises:
        ConfigError: a value is invalid; the message names the setting and what was received.
    """
    if config_file is None and os.environ.get(CONFIG_FILE_ENV):
        config_file = Path(os.environ[CONFIG_FILE_ENV])
    _check_sections(os.environ)
    file_data = read_config_file(config_file) if config_file is not None else {}
    try:
        return Settings(**file_data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from None


def _check_sections(environ: Mapping[str, str]) -> None:
    """A variable ``SF_<SECTION>__<NAME>`` must name a known section, and one that reads
    as a setting with a single underscore (``SF_KAFKA_BOOTSTRAP_SERVERS``) is refused:
    typos fail loudly. Other ``SF_`` variables (``SF_TEST_BOOTSTRAP``) are left alone."""
    sections = {
        name.upper(): f.default
        for name, f in Settings.model_fields.items()
        if isinstance(f.default, BaseModel)
    }
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        rest = name.upper().removeprefix(ENV_PREFIX)
        head, sep, _ = rest.partition(ENV_NESTED_DELIMITER)
        if sep and head not in sections:
            raise ConfigError(
                f"invalid setting {name}: no section {head.lower()!r}; expected one of "
                f"{sorted(s.lower() for s in sections)}"
            )
        section = next((s for s in sections if rest.startswith(s + "_")), None)
        if not sep and section is not None:
            field = rest.removeprefix(section + "_").lower()
            known = field in type(sections[section]).model_fields
            meant = f"{ENV_PREFIX}{section}{ENV_NESTED_DELIMITER}{field.upper()}"
            raise ConfigError(
                f"invalid setting {name}: a section and its setting are joined by two "
                f"underscores"
                + (f": did you mean {meant}?" if known else f" ({ENV_PREFIX}{section}__NAME)")
            )


def _did_you_mean(loc: tuple[str | int, ...]) -> str:
    """``; did you mean SF_...?`` for the known setting closest to ``loc``, if any is close."""
    model: Any = Settings
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        model = field.annotation if field is not None else None
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"; did you mean {setting_name((*loc[:-1], close[0]))}?" if close else ""


def _is_secret(loc: tuple[str | int, ...]) -> bool:
    return any(word in str(part) for part in loc for word in ("secret", "password", "key"))


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        dotted = ".".join(str(p) for p in loc)
        name = setting_name(loc)
        origin = f" in {config_file}" if config_file and name not in os.environ else ""
        where = f"{name} ({dotted}{origin})"
        message = error["msg"].removeprefix("Value error, ")
        received = error.get("input")
        if error["type"] == "extra_forbidden":  # a typo: its value may be a secret
            lines.append(f"invalid setting {where}: no such setting{_did_you_mean(loc)}")
            continue
        if _is_secret(loc):
            received = "**********"
        shown = "" if isinstance(received, dict) or "got" in message else f", got {received!r}"
        lines.append(f"invalid setting {where}: {message}{shown}")
    return "\n".join(lines)
