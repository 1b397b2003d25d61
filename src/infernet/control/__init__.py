"""The control plane: the OpenAI-compatible edge, node sessions, placement, jobs and money.

    cp = await ControlPlane.open("sqlite:///control.db")
    app = create_app(cp, admin_key="inf-...")      # an ASGI app; serve it with uvicorn

`docs/architecture.md` draws who owns what.
"""

from infernet.control.api.app import create_app
from infernet.control.plane import ControlPlane
from infernet.control.settings import Settings

__all__ = ["ControlPlane", "Settings", "create_app"]
