"""Every error this project raises on purpose derives from :class:`SmiError`.

    SmiError                       (schemas.errors: the schemas need no faust)
    ├── InvalidEvent               an input message that cannot be decided (bad JSON, field)
    └── StreamsError               the worker and its tools
        ├── ConfigError            a setting is missing or wrong
        ├── BatchFailed            a fetch or a transaction failed halfway: the worker stops
        ├── BrokerError            the local Kafka broker could not be fetched, started or reached
        ├── DeliveryFailed         the producer gave up on outputs: the worker stops uncommitted
        ├── NotCaughtUp            a group still had input left when a wait ran out (retriable)
        ├── PartitionsLost         the group went on without this worker (at_least_once): it stops
        ├── Rebalanced             a table scan (``/stats``, ``/metrics``) met a rebalance
        │                          (retriable)
        ├── TablePartial           a partition of the table is what a rebuild left unfinished
        ├── TopicsLost             the broker no longer has the worker's topics: the worker stops
        └── WorkerFailed           a worker this process started exited, or never got ready

``InvalidEvent`` never escapes an agent: it becomes a dead-letter record (and, for a service
request with a readable ``request_id``, an ``invalid-request`` rejection).
"""

from __future__ import annotations

from schemas.errors import InvalidEvent, SmiError

__all__ = ["InvalidEvent", "SmiError"]  # the schemas' own, in this tree too


class StreamsError(SmiError):
    """The worker's and its tools' errors."""


class ConfigError(StreamsError):
    """A setting is missing or has a value that cannot work."""


class BatchFailed(StreamsError):
    """Deciding a fetch failed part way: some of its records are written and held for the
    changelog, its offsets are not marked. Or, under exactly_once, committing the transactions
    failed while the agents held outputs for the next ones. Raised by every commit after it, so
    that nothing more is committed and the worker stops; a restarted worker decides those
    events again."""


class BrokerError(StreamsError):
    """The local Kafka broker could not be fetched, started, stopped or reached."""


class DeliveryFailed(StreamsError):
    """The producer gave up on records after its retries. Raised at the next commit, so the
    inputs that caused them are not committed: a restarted worker decides them again."""


class Rebalanced(StreamsError):
    """A table scan met a rebalance: the partitions it was counting may have moved."""

    retriable = True


class TablePartial(StreamsError):
    """A partition of the SMI table holds what an ``smi rebuild`` that did not finish wrote
    (its mark is still there): deciding on it would reject devices it never reached. The
    worker stops; ``smi rebuild`` writes the partition again."""


class TopicsLost(StreamsError):
    """The broker answers but no longer has topics the worker reads or writes: a lost or
    rebuilt cluster. Going on would mean reading from nothing and writing nowhere."""


class NotCaughtUp(StreamsError):
    """A consumer group still had input left to read when a wait for it ran out."""

    retriable = True


class PartitionsLost(StreamsError):
    """The group gave this worker's partitions to another member while it was cut off (past
    the session timeout). It stops without sending what it decided meanwhile: sent now, its
    outputs and changelog records would land after the new owner's."""


class WorkerFailed(StreamsError):
    """A worker this process started exited, or did not become ready in time."""
