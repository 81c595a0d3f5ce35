"""The operator's page's data: each worker's own part, and the group's, summed through faust's
host map (which worker owns which partitions, as the last rebalance assigned them).

Any worker answers for the whole group: it asks every worker the host map names for its part
(``/page/local``, with the caller's token), and adds them up. Each part is small: counters,
the table's devices by status as last counted (``streams.live.CachedCount``), each owned
partition's lag from the consumer's own view (no broker round trip), and the live tail.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from yarl import URL

from streams.core.records import Pending

LOCAL_PATH = "/page/local"
ASK_TIMEOUT = 3.0  # seconds a worker has to give its part
TAIL_SHOWN = 50
SOURCE = re.compile(r"^(?P<topic>.+)\[(?P<partition>\d+)\]@(?P<offset>\d+)(?: (?P<id>.*))?$")

Part = dict[str, Any]
Ask = Callable[[str], Awaitable[Part]]  # a worker's URL -> its part


def same_worker(a: str, b: str) -> bool:
    """Whether two web addresses are the same worker's (host and port; faust writes its
    canonical URL with or without a trailing slash)."""
    ua, ub = URL(a), URL(b)
    return (ua.host, ua.port) == (ub.host, ub.port)


def owners(host_map: Mapping[str, Mapping[str, Iterable[int]]]) -> dict[int, str]:
    """Partition -> the worker owning it, from a host map of one table's changelog."""
    return {p: url for url, topics in host_map.items() for ps in topics.values() for p in ps}


async def gather(urls: Iterable[str], ask: Ask) -> list[Part]:
    """Every worker's part, or why it gave none."""
    urls = list(urls)
    answers = await asyncio.gather(*(_ask_one(url, ask) for url in urls))
    return list(answers)


async def _ask_one(url: str, ask: Ask) -> Part:
    try:
        return {**await asyncio.wait_for(ask(url), ASK_TIMEOUT), "worker": url, "ok": True}
    except Exception as exc:  # a worker gone or slow is shown, not raised
        return {"worker": url, "ok": False, "error": _reason(exc)}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer in {ASK_TIMEOUT:g} s"
    return str(exc) or type(exc).__name__


def merge(parts: list[Part], partitions: dict[int, str], app_id: str) -> dict[str, Any]:
    """The group's view from every worker's part."""
    answered = [p for p in parts if p["ok"]]
    counted = [p for p in answered if p.get("devices_by_status") is not None]
    return {
        "app": app_id,
        "rebalancing": any(p.get("rebalancing") for p in answered) or not partitions,
        "complete": len(counted) == len(parts) and bool(parts),
        "workers": [_worker(p) for p in parts],
        "devices_by_status": _sum(p["devices_by_status"] for p in counted),
        "corrections_by_cause": _sum(p["corrections_by_cause"] for p in answered),
        "corrections_per_minute": _sum_nested(p["corrections_per_minute"] for p in answered),
        "accounted": _sum_nested(p["accounted"] for p in answered),
        "partitions": _partitions(partitions, answered),
        "tail": _tail(answered),
        "policy": answered[0]["policy"] if answered else None,
        "policy_differs": sorted({p["worker"] for p in answered
                                  if p["policy"] != answered[0]["policy"]}),
    }


def _worker(part: Part) -> dict[str, Any]:
    counts = part.get("devices_by_status")
    return {"url": part["worker"], "ok": part["ok"], "error": part.get("error"),
            "rebalancing": part.get("rebalancing", False),
            "devices": None if counts is None else sum(counts.values()),
            "counted_seconds_ago": part.get("counted_seconds_ago")}


def _sum(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(sorted(total.items()))


def _sum_nested(maps: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter[str]] = {}
    for m in maps:
        for key, counts in m.items():
            total.setdefault(key, Counter()).update(counts)
    return {key: dict(sorted(c.items())) for key, c in sorted(total.items())}


def _partitions(owned: dict[int, str], parts: list[Part]) -> list[dict[str, Any]]:
    """Each partition's owner (the host map's) and lag (what the owner says of it)."""
    lag: dict[int, dict[str, int]] = {}
    for part in parts:
        for row in part["lag"]:
            lag.setdefault(row["partition"], {})[row["topic"]] = row["lag"]
    return [{"partition": p, "owner": owned[p], "lag": sum(lag[p].values()) if p in lag else None,
             "by_topic": lag.get(p, {})} for p in sorted(owned)]


def _tail(parts: list[Part]) -> list[dict[str, Any]]:
    """The group's latest entries, newest first, each with its worker."""
    entries = [{**e, "worker": p["worker"]} for p in parts for e in p["tail"]]
    entries.sort(key=lambda e: (e["at"] or "", e["seq"]), reverse=True)
    return entries[:TAIL_SHOWN]


def lag_rows(lags: Mapping[tuple[str, int], int], names: Mapping[str, str]
             ) -> list[dict[str, Any]]:
    """A worker's lag per (topic, partition), with each topic's contract name (the app's
    repartition topic is ``repartition``)."""
    return [{"topic": names.get(topic, "repartition"), "partition": partition, "lag": n}
            for (topic, partition), n in sorted(lags.items())]


def device_view(value: dict[str, Any], public: dict[str, Any]) -> dict[str, Any]:
    """A device's record as the page shows it: its awaited requests and its history, each
    change with its cause and where it came from."""
    return {"record": {k: v for k, v in public.items() if k not in ("history", "closed")},
            "awaiting": [_awaited(p) for p in value.get("pending") or ()],
            "history": [_change(c) for c in reversed(value.get("history") or ())]}


def _awaited(pending: list[Any]) -> dict[str, Any]:
    return dict(zip(Pending._fields, pending, strict=False))


def _change(change: dict[str, str]) -> dict[str, Any]:
    found = SOURCE.match(change.get("source", ""))
    source = None if found is None else {
        "topic": found["topic"], "partition": int(found["partition"]),
        "offset": int(found["offset"]), "id": found["id"]}
    return {**change, "source": source, "source_text": change.get("source")}
