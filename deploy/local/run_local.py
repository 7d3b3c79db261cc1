"""`make run`: the main job end to end on this machine.

1. Kafka: the local broker (deploy/kafka/kafka-local), unless SF_KAFKA__BOOTSTRAP_SERVERS
   names another cluster.
2. The topics (input, output, dead letter), if missing.
3. The bootstrap model: trained on the bundled Beijing PM2.5 data if the model folder
   holds none. `serve` starts at once and waits for it ("not ready, no model loaded").
   Model releases are signed: an Ed25519 key pair is made once (--keys); `train` and
   `retrain` hold the private key, `serve` trusts only the public one.
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
    os.environ.update(env)
    from stream_forecaster.kafka.topics import TopicSpec, ensure_topic
    from stream_forecaster.settings import load_settings

    settings = load_settings()
    wanted = {settings.topics.input: 3, settings.topics.output: 3, settings.topics.dead_letter: 1}
    for name, partitions in wanted.items():
        ensure_topic(settings.kafka, TopicSpec(name, partitions))
    say(f"topics ready: {', '.join(wanted)}")


class Children:
    """The background processes of the run, their logs in .run/; none starts once the run
    is stopping, and all are stopped together."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []
        self._stopping = False
        self._lock = threading.Lock()

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._stopping:
                raise KeyboardInterrupt
            log = (self.logs / f"{name}.log").open("ab")
            say(f"starting {name} (log: {(self.logs / f'{name}.log').relative_to(REPO)})")
            child = subprocess.Popen([*CLI, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
            self.running.append(child)
            return child

    def start_after(
        self, first: subprocess.Popen[bytes] | None, name: str, args: list[str], env: dict[str, str]
    ) -> None:
        """Start ``name`` once ``first`` has succeeded (at once without one), in the
        background."""

        def wait_then_start() -> None:
            if first is not None and first.wait() != 0:
                say(f"bootstrap training failed: see .run/train.log; {name} not started")
                return
            with contextlib.suppress(KeyboardInterrupt):  # the run stopped meanwhile
                self.start(name, args, env)
                say(f"{name} started")

        threading.Thread(target=wait_then_start, daemon=True).start()

    def stop_all(self, grace_s: float = 15) -> None:
        """SIGTERM to each (the newest first), then kill what did not exit in time."""
        with self._lock:
            self._stopping = True
        for child in reversed(self.running):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            if child.poll() is None:
                child.kill()


def parse_args() -> argparse.Namespace:
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
    parser.add_argument(
        "--keys",
        type=Path,
        help="model signing keys: signing/<id>.key and trusted/<id>.pub, made when missing "
        "(default: the model folder's name + -keys, beside it)",
    )
    return parser.parse_args()


def signing_keys(keys: Path, models: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The settings that sign this run's model releases (for train and retrain) and that
    verify them (for serve); the key pair is made on the first run."""
    private_dir, trusted = keys / "signing", keys / "trusted"
    private = sorted(private_dir.glob("*.key"))
    if not private:
        if sorted(models.glob("*.sfmodel")):
            # Made before this run signed its models: serve would refuse them.
            aside = models.with_name(f"{models.name}.unsigned-{int(time.time())}")
            say(f"{models} holds models no key of this run signed; moved to {aside}")
            models.rename(aside)
            models.mkdir(parents=True)
        subprocess.run(
            [*CLI, "models", "keygen", str(private_dir)], check=True, stdout=subprocess.DEVNULL
        )
        private = sorted(private_dir.glob("*.key"))
        trusted.mkdir(parents=True, exist_ok=True)
        for public in private_dir.glob("*.pub"):
            public.rename(trusted / public.name)
        say(f"made the model signing key {private[0].stem} in {keys}")
    return (
        {"SF_MODEL__SIGNING_KEY": str(private[-1])},
        {"SF_MODEL__TRUSTED_KEYS": str(trusted)},
    )


def train_bootstrap_model(
    args: argparse.Namespace, env: dict[str, str], children: Children
) -> subprocess.Popen[bytes] | None:
    """Train the first model in the background when the model folder holds none."""
    if sorted(args.models.glob("*.sfmodel")):
        return None
    say(
        "no model yet: training the bootstrap model on the Beijing PM2.5 data in the "
        "background; serve forecasts as soon as it is written"
    )
    return children.start(
        "train",
        [
            *("train", "--csv", str(BEIJING), "--features", FEATURES, "--categorical", "cbwd"),
            *("--target", "pm2.5", "--name", "beijing-pm25", "--epochs", str(args.epochs)),
            # The replay stamps readings as they are sent (40 a second), not an hour apart:
            # the hour of day it would give the model is not the data's.
            *("--calendar", "none"),
            *("--out", str(args.models)),
        ],
        env,
    )


def main() -> int:
    # Ctrl-C stops the run even when it was started with SIGINT ignored (a background job
    # of a non-interactive shell, as CI starts its tests): Python keeps an ignored SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args()
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
    keys = args.keys or args.models.with_name(f"{args.models.name}-keys")
    signs, verifies = signing_keys(keys, args.models)
    children = Children(logs)
    try:
        trainer = train_bootstrap_model(args, {**env, **signs}, children)
        children.start("serve", ["serve"], {**env, **verifies})
        # After the bootstrap model: the worker then warm-starts from it instead of
        # training a first model of its own at the same time.
        retrain_env = {
            **env,
            **signs,
            "SF_METRICS__PORT": "9465",
            "SF_RETRAIN__INTERVAL_S": str(args.retrain_interval),
            "SF_RETRAIN__THREADS": "1",
        }
        children.start_after(trainer, "retrain", ["retrain"], retrain_env)
        feed = ["--source", "beijing", "--keys", str(args.stations), "--rate", str(args.rate)]
        children.start("simulate", ["simulate", *feed, "--loop"], env)
        say("live view (Ctrl-C stops everything; retrain's metrics on :9465)")
        watch = [*CLI, "watch"] + (["--duration", str(args.duration)] if args.duration else [])
        subprocess.run(watch, env=env, check=False)
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping")
        children.stop_all()
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
