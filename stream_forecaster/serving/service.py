"""``stream-forecaster serve``: one process, from start-up to shutdown.

Start-up: ``/metrics``, ``/healthz`` and ``/readyz`` served at once; the model folder and
the model topic followed (:class:`~stream_forecaster.serving.model_intake.ModelIntake`),
and nothing consumed until a first model is loaded; then the input topic waited for, the
changelog topic created or checked, the delivery guarantee chosen (once, here), the
consumer group joined and :class:`~stream_forecaster.serving.loop.ServeLoop` run.
Shutdown (SIGTERM, Ctrl-C): the batch in flight finished and delivered, the last checkpoint
landed, the group left, every client and thread closed.
"""

from __future__ import annotations

import gc
import logging
import threading

from kafka.errors import KafkaError

from stream_forecaster.kafka.availability import wait_for_cluster
from stream_forecaster.kafka.clients import make_consumer, make_producer, transactional_id
from stream_forecaster.kafka.probe import BrokerProbe
from stream_forecaster.kafka.protocols import Consumer
from stream_forecaster.model.signing import warn_if_off
from stream_forecaster.monitoring.http import HttpEndpoints
from stream_forecaster.serving.delivery import Delivery, choose_delivery
from stream_forecaster.serving.health import Health
from stream_forecaster.serving.loop import ServeLoop, use_engine
from stream_forecaster.serving.model_intake import ModelIntake
from stream_forecaster.serving.partitions import Assignment
from stream_forecaster.serving.pipeline import BatchProcessor
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.settings import Settings
from stream_forecaster.state.changelog import ChangelogReader, ensure_changelog_topic

log = logging.getLogger(__name__)

__all__ = ["ForecastService"]


class ForecastService:
    """One ``serve`` process.

    Args:
        settings: the configuration.
        metrics: the recorder (on the registry ``/metrics`` exposes).
        stop: set it (e.g. from a SIGTERM handler) to stop after the batch in flight.
    """

    def __init__(self, settings: Settings, metrics: ServeRecorder, stop: threading.Event) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stop = stop
        self.processor = BatchProcessor(settings)
        self.models = ModelIntake(settings, on_reject=metrics.bundle_rejected)
        self.delivery: Delivery | None = None
        self.assignment = Assignment(metrics, before_revoke=self._before_revoke)
        self.health = Health(
            model=lambda: self.processor.engine.version if self.processor.engine else None,
            partitions=lambda: self.assignment.partitions,
        )
        self.http = HttpEndpoints(
            settings.metrics.host,
            settings.metrics.port,
            metrics.registry,
            alive=self.health.alive,
            ready=self.health.ready,
        )

    def run(self) -> int:
        """Serve until :attr:`stop` is set; returns the exit status."""
        warn_if_off(self.models.verifier, "serve")
        self.http.start()
        self.models.start()
        try:
            self.metrics.waiting_for_model()
            engine = self.models.wait_for_first(self.stop, alive=self.health.check_in)
            if engine is None:
                return 0
            use_engine(self.processor, engine, self.metrics)
            self._serve()
            return 0
        finally:
            self.models.stop()
            self.http.stop()

    def _serve(self) -> None:
        if not wait_for_cluster(self.settings.kafka, self.stop, "serve", self._waiting):
            return
        self.health.waiting_for_kafka = None
        consumer = make_consumer(self.settings)
        try:
            partitions = self._wait_for_topic(consumer, self.settings.topics.input)
            if partitions:
                self._consume(consumer, partitions)
        finally:
            consumer.close(autocommit=False, timeout_ms=3000)  # a second close does nothing
        log.info("stopped")

    def _consume(self, consumer: Consumer, partitions: int) -> None:
        s = self.settings
        changelog = self._open_changelog(partitions)
        probe = BrokerProbe(s, partitions, on_check=self.metrics.brokers).start()
        self.health.brokers_answer = lambda: probe.connected
        if s.processing.guarantee == "exactly_once":
            log.info("exactly_once: transactional id %s", transactional_id(s))
        self.delivery = delivery = choose_delivery(
            s,
            consumer,
            self.processor.changelog,
            self.metrics,
            lambda: make_producer(s),
            stop=self.stop,
        )
        try:
            delivery.restart()
            loop = ServeLoop.assemble(
                s,
                consumer,
                self.processor,
                delivery,
                assignment=self.assignment,
                changelog=changelog,
                models=self.models,
                health=self.health,
                metrics=self.metrics,
                stop=self.stop,
                end_offsets=lambda: probe.end_offsets,
            )
            consumer.subscribe([s.topics.input], listener=self.assignment)
            # Metadata after subscribing: kafka-python compares what the first join assigns
            # with its snapshot of the subscribed topics' partitions, taken only on a metadata
            # update; taken before subscribe() it is empty, and the group rebalances again
            # right after the first assignment (see kafka.clients.make_consumer).
            consumer.topics()
            log.info(
                "serving %s -> %s (dead letters: %s), group %s, %s",
                s.topics.input,
                s.topics.output,
                s.topics.dead_letter,
                s.processing.group_id,
                s.processing.guarantee,
            )
            _freeze_start_up_objects()
            loop.run()
        finally:
            log.info("shutting down: leaving the consumer group")
            consumer.close(autocommit=False, timeout_ms=3000)
            delivery.close()
            probe.stop()
            if changelog is not None:
                changelog.close()

    def _waiting(self, reason: str) -> None:
        self.health.waiting_for_kafka = reason
        self.health.check_in()

    def _before_revoke(self) -> None:
        if self.delivery is not None:
            self.delivery.before_revoke()

    def _open_changelog(self, partitions: int) -> ChangelogReader | None:
        if not self.settings.state.changelog:
            log.info("changelog off (SF_STATE__CHANGELOG=false): windows re-warm on restart")
            return None
        topic = ensure_changelog_topic(self.settings, partitions)
        log.info("windows are kept in changelog topic %s", topic)
        return ChangelogReader(self.settings, stop=self.stop)

    def _wait_for_topic(self, consumer: Consumer, topic: str) -> int:
        """Wait until the broker knows the input topic, so that the first group join sees
        its partitions; returns its partition count, or 0 if asked to stop first."""
        warned = False
        while not self.stop.is_set():
            self.health.check_in()
            try:
                if partitions := consumer.partitions_for_topic(topic):
                    return len(partitions)
            except KafkaError as exc:
                log.debug("metadata for %s not available yet: %s", topic, exc)
            if not warned:
                log.warning("input topic %s not found; waiting for it to be created", topic)
                warned = True
            self.stop.wait(1.0)
        return 0


def _freeze_start_up_objects() -> None:
    """What exists by now (modules, the engine, the clients) lives as long as the process:
    frozen, it is out of the cyclic collector's full passes, which held the loop (measured
    in docs/benchmarks.md)."""
    gc.freeze()
    log.debug("%d objects frozen out of the cyclic garbage collector", gc.get_freeze_count())
