"""Model bundles for tests: untrained (fast, deterministic) with realistic scaling."""

from __future__ import annotations

from stream_forecaster.model.bundle import ModelBundle, TrainingInfo
from stream_forecaster.model.network import build_model, import_keras
from stream_forecaster.model.scaling import Scaling

FEATURES = ("t", "rh", "p")


def untrained_bundle(
    features: tuple[str, ...] = FEATURES,
    window: int = 4,
    seed: int = 7,
    created_at: str = "2026-01-01T00:00:00Z",
    name: str = "test",
) -> ModelBundle:
    """A bundle with seeded random weights; target = the first feature."""
    import_keras().utils.set_random_seed(seed)
    model = build_model(window, len(features), compile_model=False)
    scaling = Scaling(
        feature_mean=tuple(10.0 * (i + 1) for i in range(len(features))),
        feature_std=tuple(2.0 + i for i in range(len(features))),
        target_mean=0.1,
        target_std=1.5,
    )
    return ModelBundle.from_model(
        model,
        features=features,
        target=features[0],
        window=window,
        scaling=scaling,
        training=TrainingInfo(created_at=created_at, source="tests"),
        name=name,
    )
