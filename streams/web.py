"""The worker's HTTP API: liveness and readiness, a device's record (from whichever worker
owns it), stats, Prometheus metrics, and the operator's page (``/``) with the JSON it polls."""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar, cast

import faust
from faust.web import Request, Response, View
from yarl import URL

from schemas.models import is_eui64
from streams import fleet
from streams.agents import Processor
from streams.backends import ScanGuard
from streams.errors import Rebalanced
from streams.live import CachedCount
from streams.metrics import CONTENT_TYPE, Snapshot, exposition
from streams.settings import Settings, is_loopback
from streams.tables import table_statuses
from streams.topics import DEVICE_INPUTS, INPUTS
from streams.transport import Consumer

T = TypeVar("T")

# the page's code: behind the token too. A browser opening a link cannot send a bearer
# token, so the page asks for it the browser's own way (HTTP Basic, the token as the
# password), and the browser then sends it with the page's every request for data
PAGE = resources.files("streams") / "page"
ASSETS = {"page.js": "text/javascript", "page.css": "text/css"}


def is_ready(app: faust.App) -> bool:
    """Serving: the first table recovery is done and no rebalance is under way."""
    recovery: Any = app.tables.recovery  # type: ignore[attr-defined]
    return bool(recovery.completed.is_set() and not app.rebalancing and not app.in_recovery)


def register(app: faust.App, processor: Processor) -> None:
    table = processor.tables.device_to_record
    settings = processor.settings
    secret = settings.api_token.get_secret_value() if settings.api_token else None
    # without a token the API answers only on loopback, and only to requests that name it
    here = {"localhost", settings.web_host.lower()} if secret is None and is_loopback(
        settings.web_host) else None

    def refused(web: View, request: Request, challenge: str = "Bearer") -> Response | None:
        """401 unless the token matches, when one is configured: as a bearer token, or as
        the password of HTTP Basic (what a browser sends once it has asked). Without one,
        403 for a request that names another host: a page in the operator's browser could
        point a name of its own at 127.0.0.1 and read the API (DNS rebinding)."""
        if here is not None and not _names_here(request.headers.get("Host"), here):
            return web.json({"error": "this API answers requests for loopback only; set "
                             "SMI_API_TOKEN to serve it under other names"}, status=403)
        given = request.headers.get("Authorization")
        if secret is None or _given_token(given or "", secret):
            return None
        error = ("a bearer token is required (Authorization: Bearer ...)" if not given else
                 "the token given is not this worker's SMI_API_TOKEN")
        return web.json({"error": error}, status=401, headers={"WWW-Authenticate": challenge})

    # Liveness and readiness apart: an orchestrator restarts a worker that is not live, and
    # only holds traffic back from one that is not ready (recovering tables can take minutes,
    # and a restart then would begin the recovery again)
    @app.page("/live")
    async def live(web: View, request: Request) -> Response:
        return web.json({"live": True, "app": app.conf.id})  # answering: the loop runs

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        ready = is_ready(app) and processor.cpl.ready.is_set()
        return web.json({"ready": ready, "app": app.conf.id}, status=200 if ready else 503)

    @app.page("/devices/{device_id}")
    @_token_first(refused)
    @app.table_route(table=table, match_info="device_id")
    async def device(web: View, request: Request, device_id: str) -> Response:
        return _device(web, table, "/devices/", device_id, _public)

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

    statuses = CachedCount(lambda: _statuses_now(app, processor),
                           key=lambda: (app.consumer_generation_id, _owned(app, processor)))

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        if denied := refused(web, request):
            return denied
        try:
            by_status = await statuses.get()
        except Rebalanced:
            return _rebalancing(web)
        recent = processor.recent
        snapshot = Snapshot(by_status, _lag(app, processor), len(recent),
                            {"hit": recent.hits, "miss": recent.misses})
        return web.text(exposition(processor.metrics, snapshot).decode(),
                        content_type=CONTENT_TYPE)

    _register_page(app, processor, refused, statuses)


Refused = Callable[..., Response | None]
BASIC = 'Basic realm="smi-streams: the API token as the password", charset="UTF-8"'


ViewFn = Callable[..., Awaitable[Response]]


def _token_first(refused: Refused) -> Callable[[ViewFn], ViewFn]:
    """The token checked before faust's table route forwards a request to the worker that
    owns the key: a request without it goes no further than the first worker."""
    def guarded(view: ViewFn) -> ViewFn:
        @functools.wraps(view)
        async def check(web: View, request: Request, **match: Any) -> Response:
            return refused(web, request) or await view(web, request, **match)
        return check
    return guarded


def _given_token(authorization: str, secret: str) -> bool:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "basic":  # schemes ignore case (RFC 9110)
        try:
            value = base64.b64decode(value, validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    # a header's bytes that are not UTF-8 come as surrogates: they go back as they came
    return hmac.compare_digest(value.encode(errors="surrogateescape"), secret.encode())


def _names_here(host: str | None, here: set[str]) -> bool:
    """Whether a request's Host is loopback or this worker's host (no Host: not a browser)."""
    if host is None:
        return True
    try:
        name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return False
    return name in here or is_loopback(name)


def _register_page(app: faust.App, processor: Processor, refused: Refused,
                   statuses: CachedCount) -> None:
    """``/``, its code, and the JSON it polls: this worker's part, the group's, a device."""
    table = processor.tables.device_to_record
    index = (PAGE / "index.html").read_text()

    @app.page("/")
    async def page(web: View, request: Request) -> Response:
        if denied := refused(web, request, BASIC):
            return denied
        return web.html(index, headers={"Cache-Control": "no-cache"})

    @app.page("/assets/{name}")
    async def asset(web: View, request: Request, name: str) -> Response:
        if denied := refused(web, request, BASIC):
            return denied
        if name not in ASSETS:
            return web.json({"error": f"no asset {name}"}, status=404)
        return web.text((PAGE / name).read_text(), content_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache"})

    async def local() -> dict[str, Any]:
        return await _local_part(app, processor, statuses)

    @app.page(fleet.LOCAL_PATH)
    async def local_part(web: View, request: Request) -> Response:
        return refused(web, request) or web.json(await local())

    @app.page("/page/fleet")
    async def group(web: View, request: Request) -> Response:
        if denied := refused(web, request):
            return denied
        auth = request.headers.get("Authorization")
        host_map = app.router.table_metadata(table.name)
        urls = list(host_map) or [str(app.conf.canonical_url)]
        parts = await fleet.gather(urls, _asker(app, auth, local))
        return web.json(fleet.merge(parts, fleet.owners(host_map), app.conf.id))

    @app.page("/page/devices/{device_id}")
    @_token_first(refused)
    @app.table_route(table=table, match_info="device_id")
    async def device_page(web: View, request: Request, device_id: str) -> Response:
        return _device(web, table, "/page/devices/", device_id,
                       lambda value: fleet.device_view(value, _public(value)))


def _device(web: View, table: Any, path: str, device_id: str,
            view: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
    """A device's record as ``view`` shows it: 400 for what is no device ID, a redirect to
    the stored (upper-case) key, which the route went by, 404 for a device not there."""
    if not is_eui64(device_id):
        return web.json({"error": f"{device_id} is not a device ID: an EUI-64 such as "
                         "00-DB-12-34-56-78-90-A0"}, status=400)
    if device_id != device_id.upper():
        return _moved(web, f"{path}{device_id.upper()}")
    value = table.get(device_id)
    if value is None:
        return web.json({"error": f"no device {device_id} on the SMI"}, status=404)
    return web.json(view(value))


def _asker(app: faust.App, auth: str | None,
           local: Callable[[], Awaitable[dict[str, Any]]]) -> fleet.Ask:
    """How to get a worker's part: this one's directly, another's over HTTP with the
    caller's token."""
    canonical = str(app.conf.canonical_url)
    headers = {"Authorization": auth} if auth else {}

    async def ask(url: str) -> dict[str, Any]:
        if fleet.same_worker(url, canonical):
            return await local()
        async with app.http_client.get(URL(url).with_path(fleet.LOCAL_PATH),
                                       headers=headers) as answer:
            if answer.status != 200:
                raise RuntimeError(f"answered {answer.status}")
            part: dict[str, Any] = await answer.json()
            return part

    return ask


async def _local_part(app: faust.App, processor: Processor,
                      statuses: CachedCount) -> dict[str, Any]:
    """This worker's part of the page: its own partitions only."""
    rebalancing = not is_ready(app)
    counts = None
    if not rebalancing:
        try:
            counts = dict(await statuses.get())
        except Rebalanced:
            rebalancing = True
    return {
        "rebalancing": rebalancing,
        "partitions": sorted(_owned(app, processor)),
        "devices_by_status": counts,
        "counted_seconds_ago": statuses.age(),
        "corrections_by_cause": dict(processor.metrics.corrections),
        "corrections_per_minute": processor.per_minute.to_json(),
        "accounted": processor.metrics.accounted(),
        "lag": fleet.lag_rows(_lag(app, processor), processor.topics.name_of),
        "tail": processor.tail.to_json(),
        "policy": policy(processor.settings),
    }


def policy(settings: Settings) -> dict[str, Any]:
    """The switches in force (docs/domain.md, "Policies"), and the guarantee."""
    return {
        "sr11_2_when_suspended": settings.sr11_2_when_suspended,
        "sr11_3_retry_updates_smi": settings.sr11_3_retry_updates_smi,
        "secmp0007": settings.secmp0007,
        "suspended_exceptions": sorted(settings.suspended_exceptions),
        "pending_requests_per_device": settings.pending_requests_per_device,
        "pending_max_age_seconds": settings.pending_max_age.total_seconds(),
        "processing_guarantee": settings.processing_guarantee,
    }


async def _statuses_now(app: faust.App, processor: Processor) -> Any:
    """One count of this worker's devices by status; a rebalance ends it (Rebalanced)."""
    return await table_statuses(processor.tables.device_to_record,
                                _owned(app, processor), _guard(app))


def _lag(app: faust.App, processor: Processor) -> dict[tuple[str, int], int]:
    """Per input partition this worker owns: input not yet committed (the transport's view,
    ``streams.transport.Consumer.lag``)."""
    inputs = {topic for topic, name in processor.topics.name_of.items() if name in INPUTS}
    inputs.add(processor.repartition_name)
    lags = cast(Consumer, app.consumer).lag(inputs)
    return {(tp.topic, tp.partition): n for tp, n in lags.items()}


def _public(value: dict[str, Any]) -> dict[str, Any]:
    """A record without the worker's bookkeeping."""
    return {k: v for k, v in value.items() if k not in ("pending", "gpf_responses_seen", "early",
                                                        "partition")}


def _owned(app: faust.App, processor: Processor) -> set[int]:
    """The device-stream partitions this worker owns: its table also holds standby copies of
    other workers' partitions, which are theirs to count."""
    names = processor.topics.name_of
    return {tp.partition for tp in app.assignor.assigned_actives()
            if names.get(tp.topic) in DEVICE_INPUTS}


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


def _moved(web: View, location: str) -> Response:
    return web.json({"location": location}, status=308, headers={"Location": location})


def _rebalancing(web: View) -> Response:
    return web.json({"error": "a rebalance is under way: try again shortly"}, status=503,
                    headers={"Retry-After": "5"})
