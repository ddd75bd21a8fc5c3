"""Whether the outside services that integration tests need are here, and why not."""

import functools
from urllib.parse import quote

from django.conf import settings
from django.db import connection


def postgres_unavailable() -> str | None:
    if connection.vendor != "postgresql":
        return f"needs PostgreSQL: DATABASE_URL points at {connection.vendor} (set DATABASE_URL=postgres://...)"
    return None


def redis_url() -> str | None:
    """The Redis server the suite may use: the broker's when it is Redis, else REDIS_URL."""
    broker = settings.CELERY_BROKER_URL
    if broker.startswith(("redis://", "rediss://")):
        return broker
    return settings.REDIS_URL or None


@functools.cache
def redis_unavailable() -> str | None:
    url = redis_url()
    if url is None:
        return "needs Redis: set CELERY_BROKER_URL=redis://... (or REDIS_URL)"
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"needs Redis: {url} does not answer ({error})"
    return None


def database_url_for_other_processes() -> str:
    """A DATABASE_URL naming the database this test run uses (the test database)."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
