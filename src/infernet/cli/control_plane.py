"""`infernet control-plane`: a replica of a cluster (`serve`) and its schema (`migrate`).

A cluster is several replicas on one PostgreSQL database and one Redis; `infernet up` stays
the embedded network (SQLite, the in-process bus). See docs/deploy.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from infernet.cli.app import LogFormatOpt, app, console, fail

group = typer.Typer(help="Run a control-plane replica of a cluster, and migrate its database.", no_args_is_help=True)
app.add_typer(group, name="control-plane")

DbOpt = Annotated[str, typer.Option("--db", envvar="INFERNET_DB", help="The database: postgresql://user@host:5432/name (or sqlite:///path for one replica).")]


@group.command()
def migrate(db: DbOpt) -> None:
    """Bring the database's schema up to date (run once per release, before the replicas)."""

    async def run() -> tuple[str | None, str]:
        from infernet.control.store.engine import open_engine
        from infernet.control.store.migrate import upgrade

        engine = await open_engine(db)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    with console.status("migrating…"):
        try:
            before, after = asyncio.run(run())
        except Exception as exc:  # an unreachable database, a refused login: say so plainly
            fail(f"could not migrate {_safe(db)}: {type(exc).__name__}: {exc}", "check the URL, that the server is up and that this user may create tables")
    console.print(f"schema at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"), highlight=False)


@group.command()
def serve(
    db: DbOpt,
    redis: Annotated[str, typer.Option("--redis", envvar="INFERNET_REDIS", help="Redis shared by the replicas: redis://host:6379/0.")],
    host: Annotated[str, typer.Option("--host", envvar="INFERNET_HOST", help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option("--port", "-p", envvar="INFERNET_PORT", help="Port to listen on.")] = 8787,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", envvar="INFERNET_HOME", help="Where the platform key lives (copy the same platform_key.json to every replica).")] = None,
    db_pool: Annotated[int, typer.Option("--db-pool", min=1, max=200, help="Database connections of this replica (and as many again in a burst).")] = 10,
    drain_s: Annotated[float, typer.Option("--drain-s", envvar="INFERNET_DRAIN_S", min=0, max=3600, help="On SIGTERM, how long running jobs may take to end before the replica goes anyway.")] = 30.0,
    log_format: LogFormatOpt = "text",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve one replica of a cluster. INFERNET_API_KEY seeds the admin key, as `up` does."""
    from infernet import logs

    logs.setup(logging.INFO if verbose else logging.WARNING, log_format)
    if not db.startswith(("postgresql://", "postgres://")):
        fail("a cluster replica needs PostgreSQL", "pass --db postgresql://user@host:5432/name (`infernet up` is the single-machine network)")
    try:
        asyncio.run(_serve(db, redis, host, port, data_dir, db_pool, drain_s))
    except KeyboardInterrupt:
        pass


async def _serve(db: str, redis: str, host: str, port: int, data_dir: Path | None, db_pool: int, drain_s: float = 30.0) -> None:
    import uvicorn

    from infernet.control import ControlPlane, Settings, create_app
    from infernet.control.api.server import config as server_config
    from infernet.control.errors import InfernetError

    class Server(uvicorn.Server):
        def capture_signals(self):  # type: ignore[no-untyped-def]
            return contextlib.nullcontext()

    try:
        cp = await ControlPlane.open(db, Settings(db_pool=db_pool), data_dir=data_dir, migrate=False, redis_url=redis)
    except InfernetError as exc:
        fail(exc.message)
    except Exception as exc:
        fail(f"could not open {_safe(db)}: {type(exc).__name__}: {exc}", "check the URL and that the server is up")
    server = Server(server_config(create_app(cp, admin_key=os.environ.get("INFERNET_API_KEY")), host, port, timeout_graceful_shutdown=5))
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []

    async def drain() -> None:
        console.print(f"draining (up to {drain_s:g} s): nodes sent to their other replicas as their jobs end; signal again to stop now", highlight=False)
        clean = await cp.drain(drain_s)
        if not clean:
            console.print("drain deadline reached: the jobs still open are left to the other replicas (their leases run out)", highlight=False)
        server.should_exit = True

    def on_signal() -> None:
        if draining:  # a second signal: stop now
            server.should_exit = server.force_exit = True
            return
        draining.append(loop.create_task(drain()))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    console.print(f"replica {cp.bus.replica} serving on http://{host}:{port} (database {_safe(db)}, Redis {_safe(redis)})", highlight=False)
    await server.serve()


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, where = rest.rpartition("@")
        rest = creds.split(":", 1)[0] + "@" + where
    return scheme + sep + rest
