"""What travels on the topics, and in what shape.

- ``readings``: input readings, decoded and validated.
- ``errors``: why a record cannot be used (the dead-letter reasons).
- ``timestamps``: reading times in and out.
- ``forecasts``: the forecasts published.
- ``dead_letters``: a rejected record, kept whole, with why.
- ``records``: the shapes of records as the pipeline sees them.
"""
