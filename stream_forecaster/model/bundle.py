"""Model bundles: one self-describing, checksummed file per trained model.

A bundle holds the weights, the feature list, the target, the window length, the
categorical encodings, the scaling statistics and the training metadata. Layout::

    SFBUNDLE/1 sha256=<64 hex digits of everything after this line>\\n
    <manifest: one line of JSON>\\n
    <weights: a NumPy .npz archive, arrays w000, w001, ...>

Loading verifies the checksum before it parses anything, then rebuilds the seed
architecture from code and sets the weights: nothing in the file is ever executed (no
pickle, no serialized Keras layers, ``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stream_forecaster.model.calendar import CalendarInput
from stream_forecaster.model.network import DROPOUT_RATE, LSTM_UNITS, build_model
from stream_forecaster.model.scaling import Scaling
from stream_forecaster.model.weights import MAX_BUNDLE_BYTES, WeightsError, read_weights

if TYPE_CHECKING:
    import keras

BUNDLE_SUFFIX: Final = ".sfmodel"
_MAGIC: Final = b"SFBUNDLE/1"
_HEADER_RE: Final = re.compile(rb"^SFBUNDLE/1 sha256=([0-9a-f]{64})\n")
_HEADER_LEN: Final = len(_MAGIC) + len(b" sha256=") + 64 + 1


class BundleError(ValueError):
    """A bundle cannot be read or does not fit.

    Attributes:
        reason: why it is refused, the label of ``sf_model_bundles_rejected_total``:
            ``damaged`` here; ``incompatible``, ``oversized``, ``unsigned`` or ``forged``
            in subclasses.
    """

    reason: str = "damaged"


class IncompatibleBundle(BundleError):
    """The bundle is valid but does not fit what the service was configured to serve."""

    reason = "incompatible"


class BundleTooLarge(BundleError):
    """The bundle, or what its weights would unpack to, is over the size caps; it was
    never loaded."""

    reason = "oversized"


class BundleChecksumError(BundleError):
    """The bundle's contents do not match its sha256: it was damaged or altered."""


class Architecture(BaseModel):
    """The network a bundle's weights belong to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["seed_lstm"] = "seed_lstm"
    lstm_units: int = LSTM_UNITS
    dropout: float = DROPOUT_RATE

    @model_validator(mode="after")
    def _is_seed(self) -> Architecture:
        if (self.lstm_units, self.dropout) != (LSTM_UNITS, DROPOUT_RATE):
            raise ValueError(
                f"expected the seed LSTM({LSTM_UNITS}) with Dropout({DROPOUT_RATE}), "
                f"got LSTM({self.lstm_units}) with Dropout({self.dropout})"
            )
        return self


class TrainingInfo(BaseModel):
    """Where a model came from and how well it did."""

    model_config = ConfigDict(frozen=True)

    created_at: str
    source: str = Field(description="Data the model was trained on (file name or topic).")
    table: dict[str, Any] = Field(
        default_factory=dict, description="How the source table was read (columns, options)."
    )
    series: int = 0
    data_start_ts: int | None = None
    data_end_ts: int | None = None
    holdout_from_ts: int | None = Field(
        default=None, description="Windows whose target is at or after this time were held out."
    )
    samples: dict[str, int] = Field(default_factory=dict)
    epochs: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class BundleManifest(BaseModel):
    """Everything in a bundle except the weights."""

    model_config = ConfigDict(frozen=True)

    format: Literal["stream-forecaster-bundle"] = "stream-forecaster-bundle"
    format_version: Literal[1] = 1
    name: str = "default"
    version: str
    features: tuple[str, ...]
    target: str
    window: int = Field(ge=1)
    architecture: Architecture = Architecture()
    categories: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    calendar: tuple[CalendarInput, ...] = Field(
        default=(), description="Calendar inputs after the features, two columns each."
    )
    scaling: Scaling
    training: TrainingInfo

    @property
    def n_inputs(self) -> int:
        """The network's inputs per step: the features, then two per calendar input."""
        return len(self.features) + 2 * len(self.calendar)

    @model_validator(mode="after")
    def _consistent(self) -> BundleManifest:
        if self.scaling.n_features != self.n_inputs:
            raise ValueError(
                f"expected scaling for {self.n_inputs} inputs ({len(self.features)} features, "
                f"{len(self.calendar)} calendar), got {self.scaling.n_features}"
            )
        if len(set(self.calendar)) != len(self.calendar):
            raise ValueError(f"calendar inputs must be unique, got {list(self.calendar)}")
        unknown = sorted(set(self.categories) - set(self.features))
        if unknown:
            raise ValueError(f"categories given for non-features {unknown}")
        return self


@dataclass(frozen=True)
class ModelBundle:
    """A trained model and everything needed to serve it.

    Args:
        manifest: the metadata.
        weights: the Keras weights in ``model.get_weights()`` order.
    """

    manifest: BundleManifest
    weights: tuple[npt.NDArray[np.float32], ...]

    @property
    def version(self) -> str:
        return self.manifest.version

    @classmethod
    def from_weights(
        cls,
        weights: tuple[npt.NDArray[np.float32], ...],
        *,
        features: list[str] | tuple[str, ...],
        target: str,
        window: int,
        scaling: Scaling,
        training: TrainingInfo,
        categories: dict[str, tuple[str, ...]] | None = None,
        name: str = "default",
        calendar: tuple[CalendarInput, ...] = (),
    ) -> ModelBundle:
        """Bundle the seed network's weights (in Keras's ``get_weights()`` order, e.g. a
        trained model's); the version id is the creation time and a hash of the weights.

        Raises:
            BundleError: the weights do not fit the seed network for these features.
        """
        weights = tuple(np.asarray(w, dtype=np.float32) for w in weights)
        manifest = BundleManifest(
            name=name,
            version=new_version_id(weights, training.created_at),
            features=tuple(features),
            target=target,
            window=window,
            categories=categories or {},
            calendar=calendar,
            scaling=scaling,
            training=training,
        )
        bundle = cls(manifest=manifest, weights=weights)
        bundle._check_shapes(name)
        return bundle

    # -- bytes ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialise: header with checksum, manifest line, weights archive."""
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **{f"w{i:03d}": w for i, w in enumerate(self.weights)})
        payload = self.manifest.model_dump_json().encode("utf-8") + b"\n" + buffer.getvalue()
        digest = hashlib.sha256(payload).hexdigest().encode("ascii")
        return _MAGIC + b" sha256=" + digest + b"\n" + payload

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "bundle") -> ModelBundle:
        """Parse and verify a bundle.

        Args:
            data: the bundle's bytes.
            source: where they came from, for error messages.

        Raises:
            BundleChecksumError: the contents do not match the recorded sha256.
            BundleError: not a bundle, or its contents do not fit the seed model.
        """
        if len(data) > MAX_BUNDLE_BYTES:
            raise BundleTooLarge(
                f"{source} has {len(data)} bytes, more than the {MAX_BUNDLE_BYTES} allowed"
            )
        header = _HEADER_RE.match(data[:_HEADER_LEN])
        if header is None:
            raise BundleError(
                f"{source} is not a stream-forecaster bundle: expected it to start with "
                f"{_MAGIC.decode()!r} and a sha256, got {data[:24]!r}"
            )
        payload = data[_HEADER_LEN:]
        expected = header.group(1).decode("ascii")
        actual = hashlib.sha256(payload).hexdigest()
        if actual != expected:
            raise BundleChecksumError(
                f"{source} failed its checksum: expected sha256 {expected}, got {actual}; "
                "the file is damaged or was altered"
            )
        manifest_json, sep, archive = payload.partition(b"\n")
        if not sep:
            raise BundleError(f"{source}: expected a manifest line followed by weights")
        try:
            manifest = BundleManifest.model_validate_json(manifest_json)
        except ValidationError as exc:
            raise BundleError(f"{source}: invalid manifest: {exc}") from None
        shapes = _seed_weight_shapes(manifest.window, manifest.n_inputs)
        try:
            weights = read_weights(archive, shapes)
        except WeightsError as exc:
            error = BundleTooLarge if exc.oversized else BundleError
            raise error(f"{source}: cannot read the weights: {exc}") from None
        bundle = cls(manifest=manifest, weights=weights)
        bundle._check_shapes(source)
        return bundle

    def _check_shapes(self, source: str) -> None:
        expected = _seed_weight_shapes(self.manifest.window, self.manifest.n_inputs)
        got = [tuple(w.shape) for w in self.weights]
        if got != expected:
            raise BundleError(
                f"{source}: expected weights of shapes {expected} for window "
                f"{self.manifest.window} and {self.manifest.n_inputs} inputs, got {got}"
            )
        if not all(np.isfinite(w).all() for w in self.weights):
            raise BundleError(f"{source}: weights contain NaN or infinity")

    # -- files ---------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        """Write the bundle atomically (a temporary file renamed into place).

        Args:
            path: a file path, or an existing folder to write ``<version>.sfmodel`` into.

        Returns:
            The path written.
        """
        if path.is_dir():
            path = path / f"{self.version}{BUNDLE_SUFFIX}"
        atomic_write(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        """Load a bundle file, or the newest bundle in a folder (see :func:`resolve_bundle`).

        Raises:
            BundleChecksumError: the file was damaged or altered.
            BundleError: no bundle there, or it is not a valid one.
        """
        path = resolve_bundle(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read model bundle {path}: {exc.strerror}") from None
        return cls.from_bytes(data, source=str(path))

    # -- Keras ---------------------------------------------------------------------------

    def build_model(self, *, compile_model: bool = False) -> keras.Sequential:
        """The seed LSTM with this bundle's weights."""
        model = build_model(
            self.manifest.window, self.manifest.n_inputs, compile_model=compile_model
        )
        model.set_weights(list(self.weights))
        return model


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync, rename, fsync the folder:
    a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def resolve_bundle(path: Path) -> Path:
    """The bundle file that ``path`` names: itself, or the newest ``*.sfmodel`` in a folder.

    Version ids start with their UTC creation time, so the newest sorts last.

    Raises:
        BundleError: the path does not exist, or the folder holds no bundle.
    """
    if path.is_dir():
        candidates = sorted(path.glob(f"*{BUNDLE_SUFFIX}"))
        if not candidates:
            raise BundleError(f"no model bundle (*{BUNDLE_SUFFIX}) in folder {path}")
        return candidates[-1]
    if not path.exists():
        raise BundleError(f"model bundle {path} does not exist")
    return path


def new_version_id(weights: tuple[npt.NDArray[np.float32], ...], created_at: str) -> str:
    """``<UTC time, compact>-<8 hex digits of the weights' sha256>``, sortable by time."""
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(w).tobytes())
    stamp = datetime.fromisoformat(created_at).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{digest.hexdigest()[:8]}"


def utc_now_iso() -> str:
    """The current UTC time in RFC 3339, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _seed_weight_shapes(window: int, n_features: int) -> list[tuple[int, ...]]:
    del window  # the LSTM's weights do not depend on the sequence length
    units = LSTM_UNITS
    return [(n_features, 4 * units), (units, 4 * units), (4 * units,), (units, 1), (1,)]
