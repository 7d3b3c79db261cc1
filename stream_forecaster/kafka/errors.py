"""What the Kafka cluster could not do, as one error type the command line can catch
without importing the client library."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The cluster cannot do what was asked (unreachable, refused, or in an unexpected
    state); the message says what, where, and what to do."""
