"""Schema migrations (Alembic), for SQLite and PostgreSQL alike.

The embedded control plane upgrades its SQLite file on open. A cluster migrates once, on
purpose (`infernet control-plane migrate --db URL`), and its replicas refuse to serve a
database that is behind. A database made before migrations existed (by `create_all`) is
recognized and stamped at the baseline first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from infernet.control.errors import InfernetError

_HERE = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"


class SchemaOutdated(InfernetError):
    code = "schema_outdated"


def _config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def _current(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: sa.Connection, revision: str) -> tuple[str | None, str]:
    before = _current(conn)
    cfg = _config(conn)
    if before is None and sa.inspect(conn).has_table("api_keys"):
        command.stamp(cfg, BASELINE)  # made by create_all before migrations existed
    command.upgrade(cfg, revision)
    return before, _current(conn) or ""


async def upgrade(engine: Any, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to `revision` (the newest); (revision before, revision after)."""
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade, revision)


async def current(engine: Any) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def require_head(engine: Any, url_hint: str) -> None:
    rev = await current(engine)
    if rev != head():
        raise SchemaOutdated(f"the database is at schema revision {rev or 'none'}, this control plane needs {head()}: run `infernet control-plane migrate --db {url_hint}` first")
