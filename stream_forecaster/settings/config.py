"""Service configuration: one frozen pydantic-settings model.

Every setting can come from the environment (prefix ``SF_``, nested sections joined with
``__``, e.g. ``SF_KAFKA__BOOTSTRAP_SERVERS``) or from a TOML/JSON config file; the
environment wins over the file, the file wins over the defaults. An invalid value raises
:class:`ConfigError`, whose message names the setting as the user wrote it.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "SF_"
ENV_NESTED_DELIMITER = "__"
CONFIG_FILE_ENV = "SF_CONFIG_FILE"


class ConfigError(ValueError):
    """A setting is missing, malformed or inconsistent; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Connection to the Kafka cluster, passed through to kafka-python."""

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        description="Comma-separated host:port list of brokers to bootstrap from.",
    )
    client_id: str = Field(default="stream-forecaster", min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    request_timeout_ms: int = Field(default=30_000, ge=1_000)

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("expected at least one host:port, got an empty list")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port, got {server!r}")
        return ",".join(servers)

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(
                f"security_protocol={self.security_protocol} needs sasl_mechanism "
                "(SF_KAFKA__SASL_MECHANISM)"
            )
        return self

    def client_config(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        optional: dict[str, Any] = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_plain_username,
            "sasl_plain_password": _reveal(self.sasl_plain_password),
            "ssl_cafile": _as_str(self.ssl_cafile),
            "ssl_certfile": _as_str(self.ssl_certfile),
            "ssl_keyfile": _as_str(self.ssl_keyfile),
            "ssl_password": _reveal(self.ssl_password),
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl_check_hostname"] = self.ssl_check_hostname
        return config


class TopicsSettings(_Section):
    """Topic names."""

    input: str = Field(default="sensor-readings", min_length=1, max_length=249)
    output: str = Field(default="forecasts", min_length=1, max_length=249)
    dead_letter: str = Field(default="sensor-readings-dead-letter", min_length=1, max_length=249)
    models: str = Field(
        default="stream-forecaster-models",
        min_length=1,
        max_length=249,
        description="Compacted topic of promoted model bundles (key = model name): "
        "retrain and `models promote` publish to it, serve follows it.",
    )

    @field_validator("input", "output", "dead_letter", "models")
    @classmethod
    def _legal_topic(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        bad = sorted(set(value) - allowed)
        if bad or value in (".", ".."):
            raise ValueError(
                f"expected a Kafka topic name (letters, digits, '.', '_', '-'), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> TopicsSettings:
        names = [self.input, self.output, self.dead_letter, self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"input, output and dead_letter topics must differ, got {names}")
        return self


class ModelSettings(_Section):
    """What is forecast, and from which model."""

    features: list[str] | None = Field(
        default=None,
        description="Input features in model order; unset means: take them from the bundle.",
    )
    target: str | None = Field(
        default=None, description="Feature forecast one step ahead; unset means: from the bundle."
    )
    window: int = Field(default=24, ge=2, le=10_000, description="Readings per input window.")
    path: Path = Field(
        default=Path("models"),
        description="Model bundle file, or registry folder whose newest bundle is served.",
    )
    name: str = Field(
        default="default",
        min_length=1,
        max_length=200,
        description="Model name: the key on the model topic; retrain publishes it, serve "
        "follows it.",
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret for HMAC-SHA256 signatures of bundles; when set, retrain "
        "signs and serve rejects unsigned or forged bundles.",
    )

    @field_validator("signing_secret", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: object) -> object:
        # Compose passes an unset secret as "": that means unsigned, not a secret of "".
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("features", mode="before")
    @classmethod
    def _split_features(cls, value: object) -> object:
        # The environment gives a JSON list; a plain "a,b,c" is accepted as well.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f'expected a JSON list such as ["a", "b"], got {value!r} ({exc.msg})'
                    ) from None
            return [f.strip() for f in text.split(",")] if text else []
        return value

    @field_validator("features")
    @classmethod
    def _check_features(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("expected at least one feature, got an empty list")
        blank = [f for f in value if not f.strip()]
        if blank:
            raise ValueError("feature names must not be blank")
        duplicates = sorted({f for f in value if value.count(f) > 1})
        if duplicates:
            raise ValueError(f"feature names must be unique, got duplicates {duplicates}")
        return value


class ProcessingSettings(_Section):
    """How records are consumed, batched and committed."""

    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="at_least_once: commit offsets after forecasts are flushed; exactly_once: "
        "forecasts, dead letters and offsets in one Kafka transaction.",
    )
    group_id: str = Field(default="stream-forecaster", min_length=1)
    transactional_id: str | None = Field(
        default=None,
        description="exactly_once only; stable per instance (default: <group_id>-<hostname>).",
    )
    max_batch: int = Field(default=1024, ge=1, le=100_000, description="Records per poll.")
    inference_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="ONNX Runtime threads for a batch's inference call (0: one per core). "
        "1 leaves the other cores to the Kafka client's IO thread and the broker: measured "
        "faster end to end on 2 cores than 2 threads. More pay on a machine of its own "
        "(their pool spins briefly after each call).",
    )
    session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,
        le=300_000,
        description="A member that stops heartbeating this long (crashed, partitioned) "
        "loses its partitions to the rest of the group.",
    )
    max_wait_ms: int = Field(
        default=20, ge=0, le=60_000, description="Longest wait for a poll to fill."
    )
    commit_interval_ms: int = Field(
        default=1000,
        ge=0,
        le=60_000,
        description="at_least_once: how often to checkpoint (flush the forecasts, write "
        "the windows changed since the last checkpoint to the changelog, commit offsets); "
        "0: after every batch. Forecasts are sent at once either way; a crash reprocesses "
        "at most this much. exactly_once commits every batch (one transaction each).",
    )
    max_record_bytes: int = Field(default=64 * 1024, ge=64, le=16 * 1024 * 1024)
    shutdown_timeout_s: float = Field(default=8.0, gt=0, le=300)
    model_poll_s: float = Field(
        default=5.0, gt=0, le=3600, description="How often to look for a (new) model bundle."
    )


class WindowSettings(_Section):
    """Per-key windows and their time rules."""

    interval_ms: int | None = Field(
        default=None, ge=1, description="Sampling interval; unset means: learned per key."
    )
    max_gap: float = Field(
        default=3.0, gt=1, description="A step longer than this many intervals is a gap."
    )
    gap_policy: Literal["reset", "fill"] = Field(
        default="reset", description="On a gap: start the window afresh, or fill forward."
    )
    late_tolerance_ms: int = Field(
        default=0,
        ge=0,
        description="Older than the newest reading by at most this much: counted as "
        "out_of_order rather than late. Both are dropped.",
    )
    key_ttl_s: float = Field(
        default=24 * 3600.0, gt=0, description="Keys idle this long are evicted."
    )


class StateSettings(_Section):
    """Window state that survives restarts and rebalances (a compacted changelog topic)."""

    changelog: bool = Field(
        default=True,
        description="Write each changed window to the changelog topic at every checkpoint "
        "and restore windows from it when partitions are assigned. Off: windows re-warm "
        "after every restart or rebalance.",
    )
    changelog_topic: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        description="Compacted topic of window snapshots, one partition per input "
        "partition; created at start-up when missing (default: "
        "<group_id>.<input topic>.windows).",
    )
    restore_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Longest wait for a restore to reach the changelog's end (it waits "
        "for open transactions of a crashed instance to be aborted).",
    )
    retry_backoff_max_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Longest pause between attempts to recover from a Kafka failure.",
    )

    @field_validator("changelog_topic")
    @classmethod
    def _legal_topic(cls, value: str | None) -> str | None:
        return None if value is None else TopicsSettings._legal_topic(value)


class RetrainSettings(_Section):
    """The retraining worker (``stream-forecaster retrain``)."""

    group_id: str = Field(
        default="stream-forecaster-retrain",
        min_length=1,
        description="Its own consumer group on the input topic.",
    )
    interval_s: float = Field(
        default=600.0, gt=0, description="Seconds between scheduled retrainings."
    )
    drift_factor: float = Field(
        default=1.5,
        gt=1,
        description="Retrain early when the live MAE exceeds the current model's "
        "validation MAE times this.",
    )
    min_scored: int = Field(
        default=200, ge=10, description="Live errors needed before drift is judged."
    )
    min_samples: int = Field(
        default=500, ge=20, description="Training windows needed before the first model."
    )
    history_per_key: int = Field(
        default=5000, ge=10, description="Newest readings kept per key (bounded memory)."
    )
    max_keys: int = Field(
        default=1000, ge=1, description="Keys kept in the history (about 200 KB each)."
    )
    holdout_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=0.9,
        description="Newest share of each key's history: never trained on, the promotion "
        "gate's data.",
    )
    epochs: int = Field(default=5, ge=1, le=1000, description="Epochs of a warm-started retrain.")
    first_epochs: int = Field(
        default=20, ge=1, le=1000, description="Epochs of the first model (from scratch)."
    )
    batch_size: int = Field(default=64, ge=1, le=65_536)
    patience: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Epochs without a better validation loss before a training stops.",
    )
    threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="TensorFlow threads for training, so the forecasters are not starved.",
    )


class ScoringSettings(_Section):
    """Online accuracy of the served forecasts, and their prediction intervals."""

    window: int = Field(
        default=1000,
        ge=10,
        le=1_000_000,
        description="Scored forecasts per model version in the sliding MAE/RMSE window; "
        "also the conformal calibration window.",
    )
    coverage: float = Field(
        default=0.9, gt=0, lt=1, description="Coverage of the prediction intervals."
    )
    interval_method: Literal["conformal", "mc_dropout"] = Field(
        default="conformal",
        description="conformal: quantile of recent absolute errors; mc_dropout: spread of "
        "samples with the Dropout(0.2) layer active.",
    )
    mc_samples: int = Field(default=30, ge=2, le=1000, description="mc_dropout samples.")
    min_errors: int = Field(
        default=30, ge=1, description="Errors needed before conformal intervals are given."
    )


class MetricsSettings(_Section):
    """Prometheus /metrics endpoint."""

    host: str = "0.0.0.0"
    port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port.")


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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _as_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


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
    """A variable ``SF_<SECTION>__<NAME>`` must name a known section (typos fail loudly)."""
    sections = {
        name.upper()
        for name, f in Settings.model_fields.items()
        if isinstance(f.default, BaseModel)
    }
    for name in environ:
        head, sep, _ = name.upper().removeprefix(ENV_PREFIX).partition(ENV_NESTED_DELIMITER)
        if name.upper().startswith(ENV_PREFIX) and sep and head not in sections:
            raise ConfigError(
                f"invalid setting {name}: no section {head.lower()!r}; expected one of "
                f"{sorted(s.lower() for s in sections)}"
            )


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
        shown = "" if isinstance(received, dict) or "got" in message else f", got {received!r}"
        lines.append(f"invalid setting {where}: {message}{shown}")
    return "\n".join(lines)
