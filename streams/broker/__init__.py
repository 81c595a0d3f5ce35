"""A local Apache Kafka (KRaft) from Maven Central jars: fetch, format, start, stop."""

from streams.broker.local import Cluster, Node, answers, down, fetch, status, up

__all__ = ["Cluster", "Node", "answers", "down", "fetch", "status", "up"]
