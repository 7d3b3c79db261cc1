"""serve with verification on, on the real broker: what must not be served is refused
(logged, counted by reason) and the current model stays; a release signed by a rotated key,
and a signed rollback, are swapped in, no restart."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_forecaster.model.handoff import add_judged
from stream_forecaster.model.registry import MANIFEST_NAME, Registry
from stream_forecaster.model.signing import Signer, rollback_from
from stream_forecaster.model.topic import publish_bundle
from stream_forecaster.settings import Settings
from tests.harness.bundles import untrained_bundle
from tests.harness.serve_process import ServeProcess
from tests.harness.signing import key_pair, key_signature

pytestmark = pytest.mark.kafka


def test_serve_refuses_every_abuse_of_the_hand_off_and_accepts_a_rotated_key(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """serve holds only public keys (the old and the new one, mid-rotation). Refused: an
    unsigned bundle, one signed by an untrusted key, a candidate retrain rejected, an older
    version replayed, a signed release of another model, a FIFO and a path outside the
    folder in registry.json. Accepted: a release signed by the rotated-in key, then a
    signed rollback to an older version."""
    old_key, old_public = key_pair(tmp_path / "retrain-keys")
    new_key, new_public = key_pair(tmp_path / "retrain-keys-next")
    stranger, _ = key_pair(tmp_path / "attacker-keys")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    for public in (old_public, new_public):
        shutil.copy(public, trusted / public.name)
    models = tmp_path / "models"
    models_topic = f"models-{uuid.uuid4().hex[:10]}"
    registry = Registry(models)
    first = untrained_bundle(seed=1, created_at="2026-01-01T00:00:00Z")
    registry.add(first, status="promoted", signature=key_signature(first, old_key))
    serve = ServeProcess(
        bootstrap=kafka_bootstrap,
        input_topic=new_topic(1),
        output_topic=new_topic(1),
        dead_letter_topic=new_topic(1),
        model_path=models,
        log_path=tmp_path / "serve.log",
        extra_env={
            "SF_MODEL__TRUSTED_KEYS": str(trusted),
            "SF_TOPICS__MODELS": models_topic,
            "SF_PROCESSING__MODEL_POLL_S": "0.2",
        },
    )
    # What retrain and `models promote` run with: the private key.
    signing = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap},
        topics={"models": models_topic},
        model={"path": models, "signing_key": old_key},
    )

    def refused(reason: str, count: float = 1.0) -> None:
        serve.wait_metric("sf_model_bundles_rejected_total", count, {"reason": reason})
        assert serve.metric("sf_model_info", {"version": served[-1]}) == 1  # unchanged

    served = [first.version]
    try:
        serve.start().wait_ready()
        assert serve.metric("sf_model_info", {"version": first.version}) == 1

        unsigned = untrained_bundle(seed=2, created_at="2026-02-01T00:00:00Z")
        publish_bundle(signing, unsigned, None)
        refused("unsigned")

        untrusted = untrained_bundle(seed=3, created_at="2026-03-01T00:00:00Z")
        publish_bundle(signing, untrusted, key_signature(untrusted, stranger))
        refused("forged")

        # retrain's gate rejects a candidate: it is recorded unsigned, so it cannot be
        # published as if it had passed.
        candidate = untrained_bundle(seed=4, created_at="2026-04-01T00:00:00Z")
        entry = add_judged(
            signing,
            registry,
            candidate,
            promote=False,
            reason="worse than the current model",
            figures={},
            signer=Signer.from_settings(signing.model),
        )
        assert entry.signature is None
        publish_bundle(signing, candidate, entry.signature)
        refused("unsigned", 2.0)

        older = untrained_bundle(seed=5, created_at="2025-12-01T00:00:00Z")
        publish_bundle(signing, older, key_signature(older, old_key))  # validly signed
        refused("older_version")

        pump = untrained_bundle(seed=6, created_at="2026-05-01T00:00:00Z", name="pump")
        publish_bundle(signing, pump, key_signature(pump, old_key, name="pump"))
        refused("other_model")

        rotated = untrained_bundle(seed=7, created_at="2026-06-01T00:00:00Z")
        publish_bundle(signing, rotated, key_signature(rotated, new_key))
        serve.wait_metric("sf_model_info", 1.0, {"version": rotated.version})
        served.append(rotated.version)

        # `models rollback`'s record: the older version, signed as a rollback from the one
        # served; taken although it is older.
        back = rollback_from(rotated.version)
        publish_bundle(signing, first, key_signature(first, new_key, release=back), release=back)
        serve.wait_metric("sf_model_info", 1.0, {"version": first.version})
        served.append(first.version)

        # The folder: registry.json naming a FIFO, then a file outside the folder.
        manifest = json.loads((models / MANIFEST_NAME).read_text())
        os.mkfifo(models / "fifo.sfmodel")
        outside = first.save(tmp_path / "outside.sfmodel")
        for name, count in (("fifo.sfmodel", 1.0), (f"../{outside.name}", 2.0)):
            for item in manifest["entries"]:
                if item["version"] == manifest["current"]:
                    item["file"] = name
            (models / MANIFEST_NAME).write_text(json.dumps(manifest))
            refused("damaged", count)
        log = serve.log_path.read_text()
        assert "is not a regular file" in log and "without a directory part" in log
        for said in (
            "unsigned bundle: signatures are required",
            "which is not trusted",
            f"is older than {first.version}",
            "it is a signed release of model 'pump'",
        ):
            assert said in log
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
