"""`make run`: the main job end to end on this machine.

1. Kafka: the local broker (deploy/kafka/kafka-local), unless SF_KAFKA__BOOTSTRAP_SERVERS
   names another cluster.
2. The topics (input, output, dead letter), if missing.
3. The bootstrap model: trained on the bundled Beijing PM2.5 data if the model folder
   holds none. `serve` starts at once and waits for it ("not ready, no model loaded").
4. `serve`, and `simulate` replaying the Beijing data as several stations.
5. `retrain`, once a model exists: it retrains on the live history every
   --retrain-interval seconds and hands better models to `serve` (metrics on :9465).
6. `watch`, the live console, in the foreground. Ctrl-C stops everything cleanly (and the
   local broker, if this run started it).

Logs of the background processes go to .run/*.log.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO / "deploy" / "kafka" / "kafka-local"
BEIJING = REPO / "stream_forecaster" / "data" / "samples" / "beijing_pm25_hourly.csv"
CLI = [sys.executable, "-m", "stream_forecaster"]
FEATURES = "pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def kafka_running() -> bool:
    status = subprocess.run([str(KAFKA_LOCAL), "status"], capture_output=True, check=False)
    return status.returncode == 0


def ensure_kafka() -> tuple[str, bool]:
    """The bootstrap address, and whether this run started the broker."""
    external = os.environ.get("SF_KAFKA__BOOTSTRAP_SERVERS")
    if external:
        say(f"using the Kafka cluster at {external}")
        return external, False
    was_running = kafka_running()
    say("starting the local Kafka broker (deploy/kafka/kafka-local)")
    out = subprocess.run([str(KAFKA_LOCAL), "start"], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1], not was_running


def ensure_topics(env: dict[str, str]) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    os.environ.update(env)
    from stream_forecaster.settings.config import load_settings

    settings = load_settings()
    wanted = {settings.topics.input: 3, settings.topics.output: 3, settings.topics.dead_letter: 1}
    admin = KafkaAdminClient(**settings.kafka.client_config())
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, p, 1) for n, p in wanted.items() if n not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        say(f"topics ready: {', '.join(wanted)}")
    finally:
        admin.close()


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("ab")
    say(f"starting {name} (log: {(logs / f'{name}.log').relative_to(REPO)})")
    return subprocess.Popen([*CLI, *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=REPO / "models", help="model folder")
    parser.add_argument("--stations", type=int, default=8, help="simulated stations (keys)")
    parser.add_argument("--rate", type=float, default=40.0, help="readings per second in all")
    parser.add_argument("--epochs", type=int, default=8, help="bootstrap model's max epochs")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--retrain-interval", type=float, default=300.0, help="seconds between retrainings"
    )
    args = parser.parse_args()

    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "SF_MODEL__PATH": str(args.models),
        "SF_MODEL__NAME": "beijing-pm25",
    }
    logs = REPO / ".run"
    logs.mkdir(exist_ok=True)
    bootstrap, started_kafka = ensure_kafka()
    env["SF_KAFKA__BOOTSTRAP_SERVERS"] = bootstrap
    ensure_topics(env)
    args.models.mkdir(parents=True, exist_ok=True)

    children: list[subprocess.Popen[bytes]] = []
    trainer: subprocess.Popen[bytes] | None = None
    stopping = threading.Event()
    starting = threading.Lock()  # no child starts once stopping has begun
    try:
        if not sorted(args.models.glob("*.sfmodel")):
            say(
                "no model yet: training the bootstrap model on the Beijing PM2.5 data in the "
                "background; serve forecasts as soon as it is written"
            )
            trainer = start(
                "train",
                [
                    "train",
                    "--csv",
                    str(BEIJING),
                    "--features",
                    FEATURES,
                    "--categorical",
                    "cbwd",
                    "--target",
                    "pm2.5",
                    "--name",
                    "beijing-pm25",
                    "--epochs",
                    str(args.epochs),
                    "--out",
                    str(args.models),
                ],
                env,
                logs,
            )
            children.append(trainer)
        children.append(start("serve", ["serve"], env, logs))
        retrain_env = {
            **env,
            "SF_METRICS__PORT": "9465",
            "SF_RETRAIN__INTERVAL_S": str(args.retrain_interval),
            "SF_RETRAIN__THREADS": "1",
        }

        def start_retrain() -> None:
            # After the bootstrap model: the worker then warm-starts from it instead of
            # training a first model of its own at the same time.
            if trainer is not None and trainer.wait() != 0:
                say("bootstrap training failed: see .run/train.log; retrain not started")
                return
            with starting:
                if stopping.is_set():
                    return
                children.append(start("retrain", ["retrain"], retrain_env, logs))
            say("retrain started (metrics on :9465, log in .run/retrain.log)")

        threading.Thread(target=start_retrain, daemon=True).start()
        children.append(
            start(
                "simulate",
                [
                    "simulate",
                    "--source",
                    "beijing",
                    "--keys",
                    str(args.stations),
                    "--rate",
                    str(args.rate),
                    "--loop",
                ],
                env,
                logs,
            )
        )
        say("live view (Ctrl-C stops everything)")
        watch = [*CLI, "watch"] + (["--duration", str(args.duration)] if args.duration else [])
        subprocess.run(watch, env=env, check=False)
    except KeyboardInterrupt:
        pass
    finally:
        with starting:
            stopping.set()
        say("stopping")
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            if child.poll() is None:
                child.kill()
        if started_kafka:
            subprocess.run([str(KAFKA_LOCAL), "stop"], check=False)
    say("stopped")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except subprocess.CalledProcessError as exc:
        print(f"run: step failed: {' '.join(map(str, exc.cmd))}", file=sys.stderr)
        raise SystemExit(exc.returncode) from None
