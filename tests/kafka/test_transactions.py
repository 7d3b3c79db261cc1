"""Bounded transactional calls: an answer that never comes, a stop, an error, a success."""

from __future__ import annotations

import threading

import pytest
from kafka.errors import KafkaTimeoutError, ProducerFencedError
from kafka.producer.transaction_manager import TransactionalRequestResult

from stream_forecaster.kafka import transactions


class Sender:
    def __init__(self) -> None:
        self.woken = 0

    def wakeup(self) -> None:
        self.woken += 1


class Manager:
    """Hands out the result a test prepared, as kafka-python's transaction manager would."""

    def __init__(self, result: TransactionalRequestResult) -> None:
        self.result = result

    def send_offsets_to_transaction(self, offsets: object, group: object) -> object:
        return self.result

    def begin_commit(self) -> object:
        return self.result

    def begin_abort(self) -> object:
        return self.result


class Producer:
    def __init__(self, result: TransactionalRequestResult) -> None:
        self._transaction_manager = Manager(result)
        self._sender = Sender()


def test_an_answer_that_never_comes_times_out() -> None:
    producer = Producer(TransactionalRequestResult())  # never done: the lost answer
    with pytest.raises(KafkaTimeoutError, match=r"commit_transaction got no answer within 0\.5s"):
        transactions.commit(producer, timeout_s=0.5, stop=threading.Event())
    assert producer._sender.woken == 1


def test_a_stop_abandons_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    producer = Producer(TransactionalRequestResult())
    with pytest.raises(KafkaTimeoutError, match="send_offsets_to_transaction abandoned: stopping"):
        transactions.send_offsets(producer, {}, "group", timeout_s=3600, stop=stop)


def test_the_answer_is_returned_or_its_error_raised() -> None:
    done = TransactionalRequestResult()
    done.done()
    transactions.abort(Producer(done), timeout_s=1, stop=threading.Event())
    fenced = TransactionalRequestResult()
    fenced.done(ProducerFencedError())
    with pytest.raises(ProducerFencedError):
        transactions.commit(Producer(fenced), timeout_s=1, stop=threading.Event())


def test_a_producer_without_kafka_pythons_internals_gets_its_own_call() -> None:
    calls: list[str] = []

    class Fake:
        def commit_transaction(self) -> None:
            calls.append("commit")

    transactions.commit(Fake(), timeout_s=1, stop=threading.Event())
    assert calls == ["commit"]
