"""serve with a signing secret: unsigned or forged bundles on the model topic are refused
(logged, counted) and the current model stays; a signed one is swapped in, no restart."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_forecaster.model.registry import Registry
from stream_forecaster.model.signing import sign
from stream_forecaster.model.topic import publish_bundle
from stream_forecaster.settings import Settings
from tests.harness.bundles import untrained_bundle
from tests.harness.serve_process import ServeProcess

pytestmark = pytest.mark.kafka

SECRET = "the-shared-secret"


def test_unsigned_and_forged_bundles_are_refused(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    models_topic = f"models-{uuid.uuid4().hex[:10]}"
    first = untrained_bundle(created_at="2026-01-01T00:00:00Z")
    Registry(tmp_path).add(first, status="promoted", signature=sign(first.to_bytes(), SECRET))
    serve = ServeProcess(
        bootstrap=kafka_bootstrap,
        input_topic=new_topic(1),
        output_topic=new_topic(1),
        dead_letter_topic=new_topic(1),
        model_path=tmp_path,
        log_path=tmp_path / "serve.log",
        extra_env={"SF_MODEL__SIGNING_SECRET": SECRET, "SF_TOPICS__MODELS": models_topic},
    )
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap},
        topics={"models": models_topic},
    )
    try:
        serve.start().wait_ready()
        assert serve.metric("sf_model_info", {"version": first.version}) == 1

        unsigned = untrained_bundle(seed=2, created_at="2026-02-01T00:00:00Z")
        publish_bundle(settings, unsigned, None)
        serve.wait_metric("sf_model_bundles_rejected_total", 1.0, {"reason": "unsigned"})
        forged = untrained_bundle(seed=3, created_at="2026-03-01T00:00:00Z")
        publish_bundle(settings, forged, sign(forged.to_bytes(), "not-the-secret"))
        serve.wait_metric("sf_model_bundles_rejected_total", 1.0, {"reason": "forged"})
        assert serve.metric("sf_model_info", {"version": first.version}) == 1  # unchanged

        signed = untrained_bundle(seed=4, created_at="2026-04-01T00:00:00Z")
        publish_bundle(settings, signed, sign(signed.to_bytes(), SECRET))
        serve.wait_metric("sf_model_info", 1.0, {"version": signed.version})
        log = serve.log_path.read_text()
        assert "unsigned" in log and "forged" in log
        status, _ = serve.terminate()
        assert status == 0  # the same process throughout
    finally:
        serve.close()


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def test_a_zip_bomb_on_the_model_topic_is_refused_without_its_memory(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Signing off (as Compose and Kubernetes start): a 1 MB bundle whose weights unpack to
    240 MB is refused as oversized, counted, and serve's peak memory barely moves."""
    import numpy as np

    from tests.harness.bundles import archive_of, bundle_bytes, members_of, npy_bytes

    models_topic = f"models-{uuid.uuid4().hex[:10]}"
    first = untrained_bundle(created_at="2026-01-01T00:00:00Z")
    Registry(tmp_path).add(first, status="promoted")
    serve = ServeProcess(
        bootstrap=kafka_bootstrap,
        input_topic=new_topic(1),
        output_topic=new_topic(1),
        dead_letter_topic=new_topic(1),
        model_path=tmp_path,
        log_path=tmp_path / "serve.log",
        extra_env={"SF_TOPICS__MODELS": models_topic},
    )
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap}, topics={"models": models_topic}
    )
    try:
        serve.start().wait_ready()
        assert serve.process is not None
        before = peak_rss_bytes(serve.process.pid)
        bomb_of = untrained_bundle(seed=5, created_at="2026-05-01T00:00:00Z")
        members = members_of(bomb_of)
        members["w001.npy"] = npy_bytes(np.zeros(60_000_000, dtype=np.float32))
        bomb = bundle_bytes(bomb_of.manifest.model_dump_json().encode(), archive_of(members))
        publish_bundle(settings, bomb_of, None, data=bomb)

        serve.wait_metric("sf_model_bundles_rejected_total", 1.0, {"reason": "oversized"})
        assert peak_rss_bytes(serve.process.pid) - before < 2 * len(bomb) + 32 * 1024 * 1024
        assert serve.metric("sf_model_info", {"version": first.version}) == 1  # unchanged
        status, _ = serve.terminate()
        assert status == 0
    finally:
        serve.close()
