"""retrain with verification on: it does not train from a current model whose release does
not verify (its weights could be anyone's, and the result would be signed)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from stream_forecaster.model.registry import Registry
from stream_forecaster.monitoring.retrain_metrics import RetrainMetrics
from stream_forecaster.retraining.worker import RetrainWorker
from stream_forecaster.settings import Settings
from tests.harness.bundles import untrained_bundle
from tests.harness.signing import key_pair, key_signature

pytestmark = pytest.mark.slow  # the worker imports TensorFlow


def worker_for(models: Path, private_key: Path) -> RetrainWorker:
    settings = Settings(
        model={"path": models, "signing_key": private_key, "features": ["t", "rh", "p"]},
        metrics={"port": 0},
    )
    return RetrainWorker(settings, RetrainMetrics(CollectorRegistry()), threading.Event())


def test_retrain_refuses_an_unsigned_current_model_and_trains_from_scratch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    private, _ = key_pair(tmp_path / "keys")
    unsigned = untrained_bundle(seed=1)
    Registry(tmp_path / "models").add(unsigned, status="promoted")

    worker = worker_for(tmp_path / "models", private)

    assert worker.current is None
    assert f"refusing the current model of {tmp_path / 'models'} (unsigned)" in caplog.text
    assert "trained from scratch" in caplog.text


def test_retrain_takes_a_current_model_signed_by_its_key(tmp_path: Path) -> None:
    private, _ = key_pair(tmp_path / "keys")
    signed = untrained_bundle(seed=2)
    Registry(tmp_path / "models").add(
        signed, status="promoted", signature=key_signature(signed, private)
    )
    worker = worker_for(tmp_path / "models", private)
    assert worker.current is not None and worker.current.version == signed.version
