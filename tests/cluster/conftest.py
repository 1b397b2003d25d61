"""PostgreSQL and Redis for the cluster tests: the control tests' fixtures (each skips loudly
when its service is absent)."""

from tests.control.conftest import pg_url, redis_url  # noqa: F401
