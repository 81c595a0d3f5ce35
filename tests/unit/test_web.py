"""Liveness and readiness, apart: /live answers while the worker's loop runs, /health only
once its tables are recovered; both answer without the API token (probes carry none)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.app import create_app
from streams.settings import Settings


class Request:  # what the views read of a request: no Authorization header
    headers: dict[str, str] = {}


async def answer(app: Any, path: str) -> tuple[int, dict[str, object]]:
    response = await app.web.views[path].get(Request())
    return response.status, json.loads(response.body)


async def test_a_recovering_worker_is_live_but_not_ready(tmp_path: Path) -> None:
    app: Any = create_app(Settings(data_dir=tmp_path, app_id="unit", api_token="t0ken"))  # type: ignore[arg-type]
    assert await answer(app, "/live") == (200, {"live": True, "app": "unit"})
    assert await answer(app, "/health") == (503, {"ready": False, "app": "unit"})
    status, _ = await answer(app, "/stats")
    assert status == 401  # the token guards the rest


class Asking:
    def __init__(self, **headers: str) -> None:
        self.headers = headers


async def status_of(app: Any, path: str, **headers: str) -> int:
    response = await app.web.views[path].get(Asking(**headers))
    return int(response.status)


async def test_without_a_token_only_requests_naming_loopback_are_answered(
        tmp_path: Path) -> None:
    """A page in the operator's browser could point a name of its own at 127.0.0.1 (DNS
    rebinding) and read a worker that serves without a token: its requests name that host."""
    app: Any = create_app(Settings(data_dir=tmp_path, app_id="unit"))
    assert await status_of(app, "/", Host="rebind.attacker.example") == 403
    assert await status_of(app, "/", Host="rebind.attacker.example:6066") == 403
    for host in ("127.0.0.1:6066", "localhost:6066", "[::1]:6066", "127.0.0.1"):
        assert await status_of(app, "/", Host=host) == 200, host
    assert await status_of(app, "/live", Host="rebind.attacker.example") == 200  # probes


async def test_a_token_is_taken_in_any_case_of_its_scheme_and_odd_bytes_are_refused(
        tmp_path: Path) -> None:
    app: Any = create_app(Settings(data_dir=tmp_path, app_id="unit", api_token="t0ken"))  # type: ignore[arg-type]
    assert await status_of(app, "/", Authorization="bearer t0ken") == 200
    assert await status_of(app, "/", Authorization="BASIC OnQwa2Vu") == 200  # ":t0ken"
    # as aiohttp hands over a header whose bytes are not UTF-8
    assert await status_of(app, "/", Authorization="Bearer \udcff\udcfe") == 401
    assert await status_of(app, "/", Host="any.name.example", Authorization="Bearer t0ken") == 200


def test_a_worker_on_ipv6_loopback_says_where_it_is(tmp_path: Path) -> None:
    app: Any = create_app(Settings(data_dir=tmp_path, app_id="unit", web_host="::1"))
    assert str(app.conf.canonical_url) == "http://[::1]:6066"


async def test_a_wrong_token_is_told_apart_from_none(tmp_path: Path) -> None:
    app: Any = create_app(Settings(data_dir=tmp_path, app_id="unit", api_token="t0ken"))  # type: ignore[arg-type]
    none = await app.web.views["/stats"].get(Asking())
    wrong = await app.web.views["/stats"].get(Asking(Authorization="Bearer nope"))
    assert (none.status, wrong.status) == (401, 401)
    assert "is required" in json.loads(none.body)["error"]
    assert "not this worker's SMI_API_TOKEN" in json.loads(wrong.body)["error"]
