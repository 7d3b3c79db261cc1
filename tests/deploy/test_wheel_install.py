"""The wheel as a user installs it: built from this tree, installed into a clean virtualenv
without the training extra. It serves, simulates and watches with no TensorFlow, carries
its sample data, and the commands that need what it lacks say so in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.kafka_broker import consume

REPO = Path(__file__).resolve().parents[2]
#: The environment of the clean install: nothing of the test run's Python path or settings.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SF_", "PYTHON"))}

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@dataclass(frozen=True)
class Install:
    """A clean virtualenv with the wheel installed."""

    python: Path
    command: Path

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.command), *args],
            env={**CLEAN_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=self.python.parents[2],  # not the checkout: nothing of it may be found
        )


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy: building writes build/ beside the sources
    shutil.copytree(REPO / "stream_forecaster", source / "stream_forecaster", ignore=IGNORED)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = work.glob("stream_forecaster-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return Install(python, env_dir / "bin" / "stream-forecaster")


def test_the_base_install_has_no_training_libraries(install: Install) -> None:
    code = (
        "import importlib.util as u; "
        "print([m for m in ('tensorflow', 'keras', 'matplotlib') if u.find_spec(m)])"
    )
    probe = subprocess.run(
        [str(install.python), "-c", code], env=CLEAN_ENV, capture_output=True, text=True, check=True
    )
    assert probe.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["serve", "simulate", "watch", "models", "config"])
def test_serving_commands_answer_help(install: Install, command: str) -> None:
    result = install.run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: stream-forecaster" in result.stdout


def test_simulate_replays_the_packaged_sample_data_into_the_test_broker(
    install: Install, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    result = install.run(
        "simulate", "--source", "beijing", "--limit", "50", "--rate", "1000",
        env={"SF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, "SF_TOPICS__INPUT": topic},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sent 50 records (50 readings" in result.stdout
    records = consume(kafka_bootstrap, topic, 50, timeout=60)
    assert len(records) == 50
    assert records[0].key == b"beijing-00"


@pytest.mark.parametrize("command", ["train", "backtest", "retrain"])
def test_training_commands_say_which_extra_they_need(install: Install, command: str) -> None:
    args = ["--csv", "readings.csv"] if command in ("train", "backtest") else []
    result = install.run(command, *args)
    assert result.returncode == 2
    assert "pip install 'stream-forecaster[train]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_says_how_to_run_the_benchmarks(install: Install) -> None:
    result = install.run("bench")
    assert result.returncode == 2
    assert "clone the repository and run `make bench`" in result.stderr
