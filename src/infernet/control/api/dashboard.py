"""The operator's browser view: a static page that calls the same API with the key it is given."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

_PAGE = Path(__file__).resolve().parents[2] / "web" / "dashboard.html"


async def dashboard(request: Request) -> Response:
    return HTMLResponse(_PAGE.read_text())


routes = [Route("/dashboard", dashboard)]
