"""What ``serve`` needs, checked in order, each with the fix: the brokers answer, the
topics exist as serve expects them, the principal may use them (the ACLs, as the brokers
report them for this client), and a model is there, loadable and correctly signed.

No check changes anything: no topic is created, nothing is produced or committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from stream_forecaster.kafka.availability import why_unavailable
from stream_forecaster.kafka.clients import client_config, transactional_id
from stream_forecaster.model.folder import ModelSource
from stream_forecaster.settings import Settings

log = logging.getLogger(__name__)

_UNKNOWN_TOPIC: Final = 3  # UNKNOWN_TOPIC_OR_PARTITION
_TOPIC_AUTHORIZATION_FAILED: Final = 29
#: How long a coordinator lookup that fails retriably is tried again (a new cluster creates
#: its transaction state topic on the first lookup).
_COORDINATOR_WAIT_S: Final = 15.0


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``ok``, or what is wrong and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        verdict = "ok  " if self.ok else "FAIL"
        fix = f"; fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{verdict}  {self.name}: {self.detail}{fix}"


@dataclass(frozen=True)
class _Need:
    """A topic serve uses: the operations it needs, and how it should look."""

    role: str
    name: str
    operations: tuple[str, ...]
    created_by: str = ""  # who creates it when missing ("" = nobody: it must exist)
    compact: bool = False
    partitions: int | None = None


def run_checks(settings: Settings) -> Iterator[Check]:
    """The checks, in order; later ones are skipped when Kafka does not answer."""
    reason = why_unavailable(settings.kafka)
    servers = settings.kafka.bootstrap_servers
    if reason is not None:
        yield Check("brokers", False, f"Kafka at {servers} does not answer: {reason}")
    else:
        yield Check("brokers", True, f"Kafka at {servers} answers")
        yield from _topic_checks(settings)
    yield _model_check(settings)


def _topic_checks(settings: Settings) -> Iterator[Check]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**client_config(settings.kafka))
    try:
        t = settings.topics
        described = {d["name"]: d for d in admin.describe_topics([t.input])}
        input_partitions = len(described.get(t.input, {}).get("partitions") or []) or None
        needs = [
            _Need("input", t.input, ("READ", "DESCRIBE")),
            _Need("output", t.output, ("WRITE", "DESCRIBE")),
            _Need("dead letters", t.dead_letter, ("WRITE", "DESCRIBE")),
            _Need("models", t.models, ("READ", "DESCRIBE"), "retrain or `models promote`", True, 1),
        ]
        if settings.state.changelog:
            needs.append(
                _Need(
                    "changelog",
                    settings.changelog_topic(),
                    ("CREATE", "READ", "WRITE", "DESCRIBE"),
                    "serve (it needs CREATE on it)",
                    True,
                    input_partitions,
                )
            )
        described = {d["name"]: d for d in admin.describe_topics([n.name for n in needs])}
        compacted = _compacted(
            admin, [n.name for n in needs if n.compact and _exists(described.get(n.name))]
        )
        for need in needs:
            yield _topic_check(need, described.get(need.name), compacted)
        yield from _coordinator_checks(admin, settings)
    finally:
        admin.close()


def _coordinator_checks(admin: Any, settings: Settings) -> Iterator[Check]:
    """The consumer group and the transactional id: looking up their coordinator needs
    DESCRIBE on them, and changes nothing (READ on the group and WRITE on the id are checked
    only by joining and by init_transactions, which would fence a running serve)."""
    from kafka.protocol.metadata import CoordinatorType

    group = settings.processing.group_id
    yield _coordinator_check(
        admin,
        f"consumer group {group}",
        group,
        CoordinatorType.GROUP,
        resource="group",
        operations=("Read",),
    )
    if settings.processing.guarantee == "exactly_once":
        tid = transactional_id(settings)
        yield _coordinator_check(
            admin,
            f"transactional id {tid}",
            tid,
            CoordinatorType.TRANSACTION,
            resource="transactional-id",
            operations=("Write", "Describe"),
        )


def _coordinator_check(
    admin: Any, name: str, key: str, key_type: Any, *, resource: str, operations: tuple[str, ...]
) -> Check:
    from kafka.errors import AuthorizationError, KafkaError

    fix = (
        "kafka-acls.sh --add --allow-principal User:<serve's user> "
        + " ".join(f"--operation {op}" for op in operations)
        + f" --{resource} {key}"
    )
    deadline = time.monotonic() + _COORDINATOR_WAIT_S
    while True:
        try:
            admin._manager.run(admin._find_coordinator_ids, [key], key_type)
        except AuthorizationError:
            return Check(name, False, "this principal may not use it", fix)
        except KafkaError as exc:
            # A new cluster creates its internal topics on the first lookup: try again.
            if getattr(exc, "retriable", False) and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            return Check(name, False, f"its coordinator cannot be found: {exc!r}", fix)
        verb = " and ".join(op.upper() for op in operations)
        return Check(name, True, f"may be described (serve needs {verb}, checked when used)")


def _exists(topic: dict[str, Any] | None) -> bool:
    return topic is not None and topic.get("error_code") == 0


def _compacted(admin: Any, names: list[str]) -> dict[str, bool]:
    if not names:
        return {}
    from kafka.admin import ConfigResource, ConfigResourceType

    found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    configs = found.get("topic", {}) if isinstance(found, dict) else {}
    return {
        name: "compact" in str(configs.get(name, {}).get("cleanup.policy", {}).get("value", ""))
        for name in names
    }


def _topic_check(need: _Need, topic: dict[str, Any] | None, compacted: dict[str, bool]) -> Check:
    name = f"{need.role} topic {need.name}"
    if topic is not None and topic.get("error_code") == _TOPIC_AUTHORIZATION_FAILED:
        return Check(name, False, "not authorized to describe it", _acl_fix(need, need.operations))
    if topic is None or not _exists(topic):
        if need.created_by:
            return Check(name, True, f"does not exist yet; {need.created_by} creates it")
        fix = f"create it (kafka-topics.sh --create --topic {need.name} --partitions N)"
        return Check(name, False, "does not exist", fix)
    problem = _shape_problem(need, topic, compacted) or _acl_problem(need, topic)
    if problem is not None:
        return Check(name, False, *problem)
    partitions = len(topic.get("partitions") or [])
    shape = f"{partitions} partition{'s' if partitions != 1 else ''}"
    return Check(name, True, shape + (", compacted" if need.compact else ""))


def _shape_problem(
    need: _Need, topic: dict[str, Any], compacted: dict[str, bool]
) -> tuple[str, str] | None:
    partitions = len(topic.get("partitions") or [])
    if need.partitions is not None and partitions != need.partitions:
        return (
            f"has {partitions} partitions, expected {need.partitions}",
            "delete it (serve or retrain creates it again) or set its SF_ setting to a new name",
        )
    if need.compact and not compacted.get(need.name, True):
        return "is not compacted", f"set cleanup.policy=compact on {need.name}"
    return None


def _acl_problem(need: _Need, topic: dict[str, Any]) -> tuple[str, str] | None:
    allowed = topic.get("authorized_operations")
    missing = [op for op in need.operations if allowed and op not in allowed]
    if missing:
        return f"this principal may not {', '.join(missing)}", _acl_fix(need, missing)
    return None


def _acl_fix(need: _Need, operations: tuple[str, ...] | list[str]) -> str:
    return (
        "kafka-acls.sh --add --allow-principal User:<serve's user> "
        + " ".join(f"--operation {op.title()}" for op in operations)
        + f" --topic {need.name}"
    )


def _model_check(settings: Settings) -> Check:
    from stream_forecaster.model.keys import KeyFileError

    rejected: list[str] = []
    try:
        source = ModelSource(
            settings.model,
            on_reject=lambda reason, detail: rejected.append(f"{reason}: {detail}"),
        )
    except KeyFileError as exc:
        return Check("model", False, str(exc), "point the setting at the key file")
    logging.getLogger("stream_forecaster.model.folder").disabled = True  # the check says it
    try:
        offer = source.poll()
    finally:
        logging.getLogger("stream_forecaster.model.folder").disabled = False
    where = settings.model.path
    if offer is not None:
        bundle = offer.bundle
        signed = (
            f", signature verified ({source.verifier.describe()})"
            if source.verifier.on
            else ", signatures off"
        )
        return Check(
            "model", True, f"{bundle.version} ({bundle.manifest.name}) from {where}{signed}"
        )
    if rejected:
        return Check(
            "model", False, f"refused {rejected[0]}", "see the reasons in docs: Troubleshooting"
        )
    return Check(
        "model",
        False,
        f"no model at {where}",
        "train one (stream-forecaster train --out FOLDER) or set SF_MODEL__PATH; serve "
        "also takes one from the model topic",
    )
