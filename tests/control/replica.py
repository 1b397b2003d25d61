"""A second control-plane process for cluster tests: `python -m tests.control.replica DB_URL PORT DATA_DIR`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvicorn

from infernet.control import ControlPlane, Settings, create_app
from infernet.control.api.server import config as server_config
from tests.harness import ADMIN_KEY


async def main(db_url: str, port: int, data_dir: Path) -> None:
    cp = await ControlPlane.open(db_url, Settings(heartbeat_s=0.5), data_dir=data_dir)
    server = uvicorn.Server(server_config(create_app(cp, admin_key=ADMIN_KEY), port=port))
    await server.serve()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
