"""What is forecast, from which model, and how it is retrained: sections ``model`` and
``retrain``."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from stream_forecaster.settings.section import Section


class ModelSettings(Section):
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
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key file (PEM) that train, retrain and `models "
        "promote`/`rollback` sign releases with; `models keygen` makes one. Not for serve.",
    )
    trusted_keys: Path | None = Field(
        default=None,
        description="Ed25519 public key file, or folder of *.pub files, whose signatures "
        "serve and retrain accept; when set, unsigned and forged bundles are refused.",
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret for HMAC-SHA256 signatures (weaker than keys: whoever "
        "verifies can sign); when set, bundles are signed and must be.",
    )

    @field_validator("signing_key", "trusted_keys", mode="before")
    @classmethod
    def _blank_path_is_none(cls, value: object) -> object:
        # Compose passes an unset variable as "": that means no key, not the current folder.
        if isinstance(value, str) and not value.strip():
            return None
        return value

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


class RetrainSettings(Section):
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
