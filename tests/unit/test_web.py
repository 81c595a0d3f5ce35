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
