"""What /healthz and /readyz answer, from what the loop reports."""

from __future__ import annotations

from kafka import TopicPartition

from stream_forecaster.serving.health import ALIVE_WITHIN_S, POLLING_WITHIN_S, Health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_only_when_every_condition_holds_and_says_which_does_not() -> None:
    clock = Clock()
    model: list[str | None] = [None]
    partitions: set[TopicPartition] = set()
    health = Health(model=lambda: model[0], partitions=lambda: partitions, clock=clock)

    assert health.ready() == (False, "no model loaded")
    model[0] = "v1"
    assert health.ready() == (False, "no input partitions assigned")
    partitions.add(TopicPartition("in", 0))
    assert health.ready() == (False, "not polling the input topic")
    health.polled()
    assert health.ready() == (True, "serving model v1 on in[0]")
    answering = [False]
    health.brokers_answer = lambda: answering[0]
    assert health.ready() == (False, "Kafka brokers do not answer")
    answering[0] = True
    health.recovering = True
    assert health.ready() == (False, "recovering from a failed checkpoint")
    health.recovering = False
    clock.now += POLLING_WITHIN_S + 1
    assert health.ready() == (False, "not polling the input topic")


def test_alive_while_the_loop_checks_in() -> None:
    clock = Clock()
    health = Health(model=lambda: None, partitions=set, clock=clock)
    assert health.alive()[0]
    clock.now += ALIVE_WITHIN_S + 1
    alive, reason = health.alive()
    assert not alive and reason.startswith("main loop checked in 61.0s ago")
    health.check_in()
    assert health.alive()[0]
