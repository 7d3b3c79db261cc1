"""Dead letters: a rejected input record, kept whole, with why and where it came from.

The dead-letter record has the input's original key and value bytes, untouched, and
headers:

=====================  ==========================================================
``sf.reason``          the reason label (see ``wire.errors.INVALID_REASONS``)
``sf.detail``          what was received and what was expected (at most 1,000 chars)
``sf.source.topic``    the input topic
``sf.source.partition``  its partition (decimal)
``sf.source.offset``   its offset (decimal)
``sf.source.timestamp``  its Kafka timestamp, epoch ms (decimal)
=====================  ==========================================================
"""

from __future__ import annotations

from typing import Final

from stream_forecaster.wire.errors import InvalidRecord
from stream_forecaster.wire.records import InputRecord, OutputRecord

_DETAIL_LIMIT: Final = 1000


def dead_letter(record: InputRecord, error: InvalidRecord, topic: str) -> OutputRecord:
    """The dead-letter record for ``record``, rejected with ``error``, on ``topic``."""
    headers = [
        ("sf.reason", error.reason.encode()),
        ("sf.detail", error.detail[:_DETAIL_LIMIT].encode("utf-8", "replace")),
        ("sf.source.topic", record.topic.encode()),
        ("sf.source.partition", str(record.partition).encode()),
        ("sf.source.offset", str(record.offset).encode()),
        ("sf.source.timestamp", str(record.timestamp).encode()),
    ]
    return OutputRecord(topic=topic, key=record.key, value=record.value, headers=headers)
