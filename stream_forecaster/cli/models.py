"""``stream-forecaster models``: list, promote and roll back the versions of the registry;
make a signing key pair."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stream_forecaster.cli.arguments import EXIT_USAGE, HelpFormatter
from stream_forecaster.settings import Settings

if TYPE_CHECKING:
    from stream_forecaster.model.registry import Entry, Registry

log = logging.getLogger("stream_forecaster")


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    models = sub.add_parser(
        "models",
        help="list, promote and roll back model versions; make a signing key pair",
        description="Manage the model versions in the registry folder SF_MODEL__PATH by hand. "
        "`promote` and `rollback` change the version recorded as current in registry.json "
        "and publish that bundle to the model topic SF_TOPICS__MODELS under the key "
        "SF_MODEL__NAME (its release signed with SF_MODEL__SIGNING_KEY, or "
        "SF_MODEL__SIGNING_SECRET, when set), so every running forecaster swaps to it "
        "without a restart. `keygen` makes an Ed25519 key pair for signing.",
        epilog="examples:\n"
        "  stream-forecaster models list\n"
        "  stream-forecaster models promote 20260101T000000Z-1a2b3c4d\n"
        "  stream-forecaster models rollback\n"
        "  stream-forecaster models keygen keys/",
        formatter_class=HelpFormatter,
    )
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="print every version: created, status, current, holdout MAE, reason",
        description="Print a table of every model version in the registry folder "
        "SF_MODEL__PATH, oldest first: version, creation time, status (promoted, rejected, "
        "candidate), a * on the current one (the one forecasters serve), its MAE on the "
        "held-out data of the promotion gate when recorded, and why it was rejected. A "
        "folder without registry.json lists its *.sfmodel files, the newest current.",
        formatter_class=HelpFormatter,
    )
    listing.set_defaults(handler=run_list)
    promote = actions.add_parser(
        "promote",
        parents=[common],
        help="make VERSION current and publish it to the model topic",
        description="Publish version VERSION of the registry SF_MODEL__PATH to the model "
        "topic SF_TOPICS__MODELS (key SF_MODEL__NAME; its promotion signed when a signing "
        "key or secret is set, after checking the signature recorded for it), then record "
        "it as current "
        "and append it to the promotion history. Any version can be promoted, a rejected "
        "one too. Promoting the current version publishes it again. Exit status 2 for an "
        "unknown version, 1 when Kafka cannot be reached (then nothing changes).",
        formatter_class=HelpFormatter,
    )
    promote.add_argument("version", metavar="VERSION", help="a version shown by `models list`")
    promote.set_defaults(handler=run_promote)
    rollback = actions.add_parser(
        "rollback",
        parents=[common],
        help="go back to the version promoted before the current one, and publish it",
        description="Publish the version promoted before the current one (see the "
        "promotion history in registry.json) to the model topic SF_TOPICS__MODELS, then "
        "record it as current; the rolled-back version leaves the history, so a second "
        "rollback goes one further back. Its release is signed as a rollback from the "
        "current version: the only way serve takes an older version than the one it "
        "serves. Exit status 2 when there is no previous version, 1 when Kafka cannot be "
        "reached (then nothing changes).",
        formatter_class=HelpFormatter,
    )
    rollback.set_defaults(handler=run_rollback)
    keygen = actions.add_parser(
        "keygen",
        parents=[common],
        help="write a new Ed25519 key pair for signing model releases into DIR",
        description="Write a new Ed25519 key pair into DIR: <key id>.key, the private key "
        "(PEM, mode 0600) for SF_MODEL__SIGNING_KEY of train, retrain and `models "
        "promote`/`rollback`; and <key id>.pub, the public key for SF_MODEL__TRUSTED_KEYS of "
        "serve (a file, or a folder of *.pub files: put the new one beside the old to "
        "rotate). Never overwrites a file.",
        formatter_class=HelpFormatter,
    )
    keygen.add_argument("folder", metavar="DIR", type=Path, help="folder for the two files")
    keygen.set_defaults(handler=run_keygen)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.model.registry import Registry, RegistryError

    try:
        registry = Registry(settings.model.path)
        entries = registry.entries()
        current = registry.current()
    except RegistryError as exc:
        return _models_error(args, exc)
    folder = settings.model.path
    if not entries:
        print(f"no model versions in {folder} yet")
        return 0
    if not registry.has_manifest():
        print(f"{folder} has no registry.json: its bundle files, the newest one served")
    for line in _table(entries, current):
        print(line)
    print(f"current: {current.version if current else 'none'} (* above)")
    for stray in registry.unregistered():
        print(f"not in {folder / 'registry.json'}, never served: {stray.name}")
    return 0


def _table(entries: list[Entry], current: Entry | None) -> list[str]:
    """The versions as aligned columns, a ``*`` on the current one."""
    rows = [("", "VERSION", "CREATED", "STATUS", "HOLDOUT_MAE", "REASON")]
    for entry in entries:
        mae = entry.metrics.get("holdout_mae")
        rows.append(
            (
                "*" if current is not None and entry.version == current.version else "",
                entry.version,
                entry.created_at,
                entry.status,
                "" if mae is None else f"{mae:.4f}",
                entry.reason or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def run_promote(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.model.registry import Registry, RegistryError

    try:
        registry = Registry(settings.model.path)
        entry = registry.entry(args.version)
        current = registry.current()
    except RegistryError as exc:
        return _models_error(args, exc)
    if entry.status == "rejected":
        log.warning("promoting %s, which was rejected: %s", entry.version, entry.reason)
    status, signature = _publish(args, settings, registry, entry.version)
    if status:
        return status
    registry.promote(entry.version, signature=signature)
    if current is not None and current.version == entry.version:
        print(f"{entry.version} is already current; published it again to {settings.topics.models}")
    else:
        print(
            f"promoted {entry.version} (was {current.version if current else 'none'}); "
            f"published to {settings.topics.models}"
        )
    return 0


def run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.model.registry import Registry, RegistryError

    try:
        registry = Registry(settings.model.path)
        target = registry.previous()
        current = registry.current()
    except RegistryError as exc:
        return _models_error(args, exc)
    from stream_forecaster.model.signing import rollback_from

    release = rollback_from(current.version) if current is not None else "promote"
    status, signature = _publish(args, settings, registry, target.version, release)
    if status:
        return status
    try:
        entry = registry.rollback(signature=signature, release=release)
    except RegistryError as exc:
        return _models_error(args, exc)
    print(
        f"rolled back from {current.version if current else 'none'} to {entry.version}; "
        f"published to {settings.topics.models}"
    )
    return 0


def run_keygen(args: argparse.Namespace, settings: Settings) -> int:
    from stream_forecaster.model.keys import generate_key_pair

    try:
        kid, private, public = generate_key_pair(args.folder)
    except OSError as exc:
        print(
            f"stream-forecaster models keygen: error: cannot write into {args.folder}: "
            f"{exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(f"key {kid}:")
    print(f"  {private}  private: SF_MODEL__SIGNING_KEY of train, retrain, models promote")
    print(f"  {public}  public: SF_MODEL__TRUSTED_KEYS of serve (a file, or its folder)")
    return 0


def _publish(
    args: argparse.Namespace,
    settings: Settings,
    registry: Registry,
    version: str,
    release: str = "promote",
) -> tuple[int, str | None]:
    """Publish ``version``; returns the exit status (0, or 1 when Kafka failed: reported)
    and the signature published with it."""
    from stream_forecaster.model.handoff import publish_version
    from stream_forecaster.model.topic import ModelTopicError

    try:
        return 0, publish_version(settings, registry, version, release)
    except ModelTopicError as exc:
        print(
            f"stream-forecaster models {args.action}: error: {exc}; the registry is unchanged",
            file=sys.stderr,
        )
        return 1, None


def _models_error(args: argparse.Namespace, exc: Exception) -> int:
    print(f"stream-forecaster models {args.action}: error: {exc}", file=sys.stderr)
    return EXIT_USAGE
