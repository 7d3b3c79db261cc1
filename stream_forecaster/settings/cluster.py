"""The Kafka cluster and its topics: sections ``kafka`` and ``topics``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from stream_forecaster.settings.section import Section


class KafkaSettings(Section):
    """Connection to the Kafka cluster, passed through to kafka-python."""

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        description="Comma-separated host:port list of brokers to bootstrap from.",
    )
    client_id: str = Field(
        default="stream-forecaster",
        min_length=1,
        description="Kafka client id (broker logs, quotas).",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How to talk to the brokers: TLS, SASL, both or neither."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(default=None, description="Required with a SASL security protocol.")
    )
    sasl_plain_username: str | None = Field(default=None, description="SASL user name.")
    sasl_plain_password: SecretStr | None = Field(
        default=None, description="SASL password (masked in `config` and in errors)."
    )
    ssl_cafile: Path | None = Field(
        default=None, description="CA certificate file to verify the brokers with."
    )
    ssl_certfile: Path | None = Field(
        default=None, description="Client certificate file (mutual TLS)."
    )
    ssl_keyfile: Path | None = Field(default=None, description="Client private key file.")
    ssl_password: SecretStr | None = Field(
        default=None, description="Password of the client private key (masked)."
    )
    ssl_check_hostname: bool = Field(
        default=True, description="Verify that the broker's certificate names its host."
    )
    request_timeout_ms: int = Field(
        default=30_000,
        ge=1_000,
        description="Kafka client request timeout; also the longest wait for a checkpoint to "
        "be acknowledged.",
    )

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


class TopicsSettings(Section):
    """Topic names."""

    input: str = Field(
        default="sensor-readings",
        min_length=1,
        max_length=249,
        description="Readings in: key = series key, value = JSON reading.",
    )
    output: str = Field(
        default="forecasts",
        min_length=1,
        max_length=249,
        description="Forecasts out: key = series key, value = JSON forecast.",
    )
    dead_letter: str = Field(
        default="sensor-readings-dead-letter",
        min_length=1,
        max_length=249,
        description="Rejected records, their original bytes, with the reason in headers.",
    )
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
