"""The control plane of a chaos run, as its own process (so it can be SIGKILLed):

    python -m bench.chaos_plane HOME PORT ADMIN_KEY               # embedded: SQLite in HOME
    python -m bench.chaos_plane HOME PORT ADMIN_KEY DB_URL REDIS  # a replica of a cluster

Embedded: SQLite in HOME (kept across restarts). A replica: the store is the PostgreSQL
database DB_URL and the bus, nonces and rate limits go through REDIS (`redis://...#prefix`),
opened exactly as `infernet control-plane serve` opens them (`ControlPlane.open` with
`redis_url`, no migration: the cluster migrates once); HOME holds the platform key every
replica shares. A replica prints `replica <id> serving on <port>` first, and logs the
control plane's INFO lines (take-overs among them), so the checker knows which incarnation
owned what.

Either way: fast heartbeats and a short stall timeout so faults play out in seconds (a hold
a killed run left without its job is released after 3 s), no canaries (every job is a
client's), and the chaos engine's tokenizer (a word a token), so what each job is billed can
be checked exactly. Job leases are the default 10 s: with 5 s, the 2-core machine running a
whole cluster, its nodes and 150 clients lagged long enough now and then for a living
replica's lease to run out (and its job to be taken over, which the checker counts as a
fault).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import uvicorn

from infernet import logs
from infernet.control import ControlPlane, Settings, create_app
from infernet.control.api.server import config as server_config
from infernet.control.health.verify import VerifyPolicy
from infernet.control.money.metering import Tokenizers

MODEL = "chaos-model"


def words(text: str) -> int:
    return len(text.split())


def settings() -> Settings:
    return Settings(heartbeat_s=1.0, stall_timeout_s=3.0, queue_timeout_s=20.0, cancel_grace_s=2.0, verify=VerifyPolicy(canary_rate=0), max_queued_per_key=1000, orphan_hold_s=3.0)


async def main(home: Path, port: int, admin_key: str, db_url: str | None = None, redis_url: str | None = None) -> None:
    if db_url is None:
        cp = await ControlPlane.open(f"sqlite:///{home / 'control.db'}", settings(), data_dir=home)
    else:
        logs.setup(logging.INFO)
        cp = await ControlPlane.open(db_url, settings(), data_dir=home, migrate=False, redis_url=redis_url)
        print(f"replica {cp.bus.replica} serving on {port}", flush=True)
    cp.billing.tokenizers = Tokenizers({MODEL: lambda: words})
    server = uvicorn.Server(server_config(create_app(cp, admin_key=admin_key), port=port, timeout_graceful_shutdown=3))
    await server.serve()


if __name__ == "__main__":
    if len(sys.argv) not in (4, 6):
        sys.exit(__doc__)
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], *sys.argv[4:6]))
