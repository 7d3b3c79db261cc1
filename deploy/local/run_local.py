"""`make run`: the main job end to end on this machine.

Today (Foundation): starts the local Kafka broker (unless SF_KAFKA__BOOTSTRAP_SERVERS names
another cluster), creates the topics, trains the bootstrap model on the bundled Beijing
data if models/ holds none, and backtests it. The streaming forecaster (`serve`) and the
sensor feed (`simulate`) join here as they land.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO / "deploy" / "kafka" / "kafka-local"
BEIJING = REPO / "examples" / "data" / "beijing_pm25_hourly.csv"
MODELS = REPO / "models"
RUN_DIR = REPO / ".run"
CLI = [sys.executable, "-m", "stream_forecaster"]


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def ensure_kafka() -> str:
    external = os.environ.get("SF_KAFKA__BOOTSTRAP_SERVERS")
    if external:
        say(f"using the Kafka cluster at {external}")
        return external
    say("starting the local Kafka broker (deploy/kafka/kafka-local)")
    out = subprocess.run([str(KAFKA_LOCAL), "start"], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def ensure_topics(bootstrap: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from stream_forecaster.settings import load_settings

    settings = load_settings()
    names = [settings.topics.input, settings.topics.output, settings.topics.dead_letter]
    admin = KafkaAdminClient(**{**settings.kafka.client_config(), "bootstrap_servers": bootstrap})
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(n, num_partitions=3, replication_factor=1) for n in names if n not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        say(f"topics ready: {', '.join(names)}")
    finally:
        admin.close()


def ensure_model() -> Path:
    bundles = sorted(MODELS.glob("*.sfmodel"))
    if bundles:
        say(f"using the model bundle {bundles[-1].relative_to(REPO)}")
        return bundles[-1]
    say("training the bootstrap model on the Beijing PM2.5 data (a few minutes on 2 cores)")
    MODELS.mkdir(exist_ok=True)
    subprocess.run(
        [
            *CLI,
            "train",
            "--csv",
            str(BEIJING),
            "--time-parts",
            "year,month,day,hour",
            "--features",
            "pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir",
            "--categorical",
            "cbwd",
            "--target",
            "pm2.5",
            "--name",
            "beijing-pm25",
            "--out",
            str(MODELS),
        ],
        check=True,
    )
    return sorted(MODELS.glob("*.sfmodel"))[-1]


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bootstrap = ensure_kafka()
    ensure_topics(bootstrap)
    bundle = ensure_model()
    RUN_DIR.mkdir(exist_ok=True)
    say("backtesting it on the held-out last 20% of the data")
    subprocess.run(
        [
            *CLI,
            "backtest",
            "--csv",
            str(BEIJING),
            "--model",
            str(bundle),
            "--out",
            str(RUN_DIR / "backtest.png"),
        ],
        check=True,
    )
    say(f"done. Kafka stays up at {bootstrap} (make kafka-stop stops it).")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except subprocess.CalledProcessError as exc:
        print(f"run: step failed: {' '.join(map(str, exc.cmd))}", file=sys.stderr)
        raise SystemExit(exc.returncode) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
