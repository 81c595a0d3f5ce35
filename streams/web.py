"""The worker's HTTP API: health, a device's record (from whichever worker owns it), stats,
Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
from faust.web import Request, Response, View

from streams.agents import Processor
from streams.backends import ScanGuard
from streams.errors import Rebalanced
from streams.tables import table_size, table_statuses
from streams.topics import DEVICE_INPUTS, INPUTS

T = TypeVar("T")


def is_ready(app: faust.App) -> bool:
    """Serving: the first table recovery is done and no rebalance is under way."""
    recovery: Any = app.tables.recovery  # type: ignore[attr-defined]
    return bool(recovery.completed.is_set() and not app.rebalancing and not app.in_recovery)


def register(app: faust.App, processor: Processor) -> None:
    table = processor.tables.device_to_record
    token = processor.settings.api_token
    expected = f"Bearer {token.get_secret_value()}" if token else None

    def refused(web: View, request: Request) -> Response | None:
        """401 unless the bearer token matches, when one is configured."""
        given = request.headers.get("Authorization", "")
        if expected is None or hmac.compare_digest(given.encode(), expected.encode()):
            return None
        return web.json({"error": "a bearer token is required (Authorization: Bearer ...)"},
                        status=401, headers={"WWW-Authenticate": "Bearer"})

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        ready = is_ready(app) and processor.cpl.ready.is_set()
        return web.json({"ready": ready, "app": app.conf.id}, status=200 if ready else 503)

    @app.page("/devices/{device_id}")
    @app.table_route(table=table, match_info="device_id")
    async def device(web: View, request: Request, device_id: str) -> Response:
        if denied := refused(web, request):
            return denied
        if device_id != device_id.upper():  # route by the stored (upper-case) key
            location = f"/devices/{device_id.upper()}"
            return web.json({"location": location}, status=308, headers={"Location": location})
        value = table.get(device_id)
        if value is None:
            return web.json({"error": f"no device {device_id} on the SMI"}, status=404)
        return web.json(_public(value))

    @app.page("/stats")
    async def stats(web: View, request: Request) -> Response:
        if denied := refused(web, request):
            return denied
        try:
            by_status = await _counted(app, processor, table_statuses)
        except Rebalanced:
            return _rebalancing(web)
        return web.json({
            "devices_by_status": dict(by_status),
            "accounted": processor.metrics.accounted(),
            "messages_out": dict(processor.metrics.messages_out),
            "corrections_by_cause": dict(processor.metrics.corrections),
        })

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        if denied := refused(web, request):
            return denied
        inputs = {name for name, kind in processor.topics.kind_of.items()
                  if kind in INPUTS}
        try:
            devices = await _counted(app, processor, table_size)
        except Rebalanced:
            return _rebalancing(web)
        recent = processor.recent
        gauges = {"smi_table_devices": float(devices),
                  "smi_consumer_lag": float(_lag(app, inputs)),
                  "smi_recent_records": float(len(recent))}
        reads = {"hit": recent.hits, "miss": recent.misses}
        return web.text(processor.metrics.prometheus(gauges, reads),
                        content_type="text/plain; version=0.0.4")


def _lag(app: faust.App, topics: set[str]) -> int:
    """Input messages in the assigned partitions not yet read, as faust's monitor last saw
    them (it learns a partition's end with each fetch)."""
    monitor: Any = app.monitor
    ends = monitor.tp_end_offsets or {}
    read = monitor.tp_read_offsets or {}
    return sum(
        max(end - read.get(tp, -1) - 1, 0) for tp, end in ends.items() if tp.topic in topics
    )


def _public(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in ("pending", "gpf_responses_seen", "early",
                                                        "partition")}


def _owned(app: faust.App, processor: Processor) -> set[int]:
    """The device-stream partitions this worker owns: its table also holds standby copies of
    other workers' partitions, which are theirs to count."""
    kinds = processor.topics.kind_of
    return {tp.partition for tp in app.assignor.assigned_actives()
            if kinds.get(tp.topic) in DEVICE_INPUTS}


async def _counted(app: faust.App, processor: Processor,
                  count: Callable[[Any, set[int], ScanGuard], Awaitable[T]]) -> T:
    """``count`` over this worker's own partitions, in chunks that leave the agents running
    (``streams.tables``); a scan that meets a rebalance starts again, twice at most."""
    table = processor.tables.device_to_record
    for _ in range(2):
        try:
            return await count(table, _owned(app, processor), _guard(app))
        except Rebalanced:
            await asyncio.sleep(1.0)  # let the rebalance finish
    return await count(table, _owned(app, processor), _guard(app))


def _guard(app: faust.App) -> ScanGuard:
    """The consumer's batch lock, and a test that no rebalance began since this call."""
    consumer = app.consumer
    generation = app.consumer_generation_id
    lock = getattr(consumer, "batch_lock", None) or asyncio.Lock()  # none on memory://
    return ScanGuard(lock, lambda: not getattr(consumer, "revoking", False)
                     and app.consumer_generation_id == generation)


def _rebalancing(web: View) -> Response:
    return web.json({"error": "a rebalance is under way: try again shortly"}, status=503,
                    headers={"Retry-After": "5"})
