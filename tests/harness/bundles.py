"""Model bundles for tests: untrained (fast, deterministic, no TensorFlow) with realistic
scaling."""

from __future__ import annotations

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.model.untrained import untrained_bundle as _untrained

FEATURES = ("t", "rh", "p")


def untrained_bundle(
    features: tuple[str, ...] = FEATURES,
    window: int = 4,
    seed: int = 7,
    created_at: str = "2026-01-01T00:00:00Z",
    name: str = "test",
) -> ModelBundle:
    """A bundle with seeded random weights; target = the first feature."""
    return _untrained(features, window, seed=seed, created_at=created_at, name=name)
