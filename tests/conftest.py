"""Shared fixtures: one real Kafka broker per session, and a topic factory; and the fast
test loop's guard (``--no-tensorflow``: a test that imports TensorFlow fails, so that
``make test-unit`` stays fast and proves the serving code runs without it)."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_forecaster.data.samples import BEIJING_CSV
from tests.harness.kafka_broker import LocalBroker, create_topic


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-tensorflow",
        action="store_true",
        help="fail a test that imports TensorFlow (mark it slow instead)",
    )


_TENSORFLOW_BEFORE = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_TENSORFLOW_BEFORE] = "tensorflow" in sys.modules


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """With --no-tensorflow: the test (or a fixture it set up) must not import TensorFlow."""
    imported_here = not item.stash.get(_TENSORFLOW_BEFORE, True) and "tensorflow" in sys.modules
    if item.config.getoption("--no-tensorflow") and imported_here:
        pytest.fail(
            f"{item.nodeid} imported TensorFlow: mark it slow (pytest.mark.slow), or build "
            "its model with stream_forecaster.model.untrained",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's local broker, started once; ``None`` when ``SF_TEST_BOOTSTRAP`` names
    an external cluster (tests that stop the broker are skipped then)."""
    if os.environ.get("SF_TEST_BOOTSTRAP"):
        yield None
        return
    broker = LocalBroker(data_dir=tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalBroker | None) -> str:
    """Bootstrap address of the session's broker (``SF_TEST_BOOTSTRAP``, or the local one)."""
    return kafka_broker.bootstrap if kafka_broker else os.environ["SF_TEST_BOOTSTRAP"]


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Create uniquely named topics for one test: ``new_topic(partitions=3)``."""
    prefix = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60].strip("-")

    def make(partitions: int = 1, **configs: str) -> str:
        return create_topic(kafka_bootstrap, prefix, partitions, **configs)

    return make


@pytest.fixture(scope="session")
def beijing_csv() -> Path:
    return BEIJING_CSV


@pytest.fixture(scope="session")
def beijing_head(
    beijing_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[int], Path]:
    """``beijing_head(n)``: a CSV of the first ``n`` hours of the Beijing file."""
    lines = beijing_csv.read_text().splitlines()

    def make(hours: int) -> Path:
        path = tmp_path_factory.mktemp("data") / f"beijing_first_{hours}h.csv"
        path.write_text("\n".join(lines[: hours + 1]) + "\n")
        return path

    return make


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo what ``configure_logging`` (run by an in-process ``main()``) does to the
    process's logging, so that later tests see the logging they started with."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("kafka.net.selector", "kafka.cluster", "kafka.net.manager"):
        logging.getLogger(name).filters.clear()
    for name in ("kafka.net.connection", "kafka.net.transport"):
        logging.getLogger(name).setLevel(logging.NOTSET)
