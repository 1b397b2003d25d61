"""The operator's browser view: one page and its scripts, every asset served from here.

The page holds no data and no key: it calls the same API with the key it is given (in the
URL fragment, which never reaches a server, or typed in). A strict Content-Security-Policy
allows only this origin's scripts, styles and connections, so nothing injected into the
page could run or send the key elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parents[2] / "web"
ASSETS = "/dashboard/assets"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag) so an upgrade shows at once
}


class Assets(StaticFiles):
    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


async def page(request: Request) -> Response:
    return FileResponse(WEB / "dashboard.html", headers=HEADERS, media_type="text/html; charset=utf-8")


routes = [
    Route("/dashboard", page),
    Mount(ASSETS, app=Assets(directory=WEB), name="dashboard-assets"),
]
