"""Reading settings from the environment, failing in one line when they are wrong.

Settings come from environment variables (and a local `.env` file in development),
through django-environ. A missing or malformed variable is an operator's mistake:
it stops start-up with `ConfigurationError`, whose message names the variable.
`ConfigurationError` is a `SystemExit`, so whatever starts the process (manage.py,
gunicorn, a Celery worker) exits with that one line instead of a long traceback.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

# The databases this project supports: PostgreSQL in production, SQLite in development.
DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "postgis", "sqlite"}


class ConfigurationError(SystemExit):
    """A setting in the environment is missing or malformed; the message names it."""

    def __init__(self, variable: str, problem: str):
        self.variable = variable
        super().__init__(f"Configuration error: {variable} {problem}")


class Environment:
    """Typed, validated access to the environment variables the project reads."""

    def __init__(self, environ_mapping=None):
        self.env = environ.Env()
        if environ_mapping is not None:
            # django-environ reads from a class-level mapping; give this instance its own.
            self.env.ENVIRON = environ_mapping

    def prefixed(self, prefix: str) -> dict[str, str]:
        """Every non-empty variable whose name starts with `prefix`, keyed by the rest of its name."""
        return {name.removeprefix(prefix): value for name, value in self.env.ENVIRON.items() if name.startswith(prefix) and value}

    def bool(self, variable: str, default: bool) -> bool:
        raw = self.env.str(variable, default="").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigurationError(variable, f"must be true or false, not {raw!r}")

    def int(self, variable: str, default: int, minimum: int = 0) -> int:
        raw = self.env.str(variable, default="").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(variable, f"must be a whole number, not {raw!r}") from None
        if value < minimum:
            raise ConfigurationError(variable, f"must be at least {minimum}, not {value}")
        return value

    def str(self, variable: str, default: str) -> str:
        return self.env.str(variable, default="").strip() or default

    def list(self, variable: str, default: list[str]) -> list[str]:
        raw = self.env.str(variable, default="")
        items = [item.strip() for item in raw.split(",") if item.strip()]
        return items or default

    def secret_key(self, debug: bool) -> str:
        value = self.env.str("SECRET_KEY", default="").strip()
        if value:
            if not debug and len(value) < 32:
                raise ConfigurationError("SECRET_KEY", "is too short for production (use 50 random characters)")
            return value
        if debug:
            # Only for a developer's own machine: DEBUG is never on in production.
            return "django-insecure-local-development-key-never-use-in-production"
        raise ConfigurationError("SECRET_KEY", "is not set (required when DEBUG is off)")

    def url(self, variable: str, default: str | None, schemes: tuple[str, ...]) -> str:
        value = self.env.str(variable, default="").strip().rstrip("/")
        if not value:
            if default is None:
                raise ConfigurationError(variable, "is not set (required when DEBUG is off)")
            return default
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise ConfigurationError(variable, f"must be an absolute {' or '.join(schemes)} URL, not {value!r}")
        return value

    def site_url(self, debug: bool, allow_http: bool) -> str:
        """SITE_URL: any http(s) URL with DEBUG on (default: the local runserver's, on SITE_PORT,
        8000 unless `make run PORT=...` set it: the workers build the emails' links from it, so
        they must know the web server's port too); with DEBUG off it is required and must be
        https, unless `allow_http` (ALLOW_HTTP_SITE_URL) says this production-like run is served
        over plain http on purpose."""
        local = f"http://127.0.0.1:{self.int('SITE_PORT', default=8000, minimum=1)}" if debug else None
        value = self.url("SITE_URL", default=local, schemes=("http", "https"))
        if not debug and not allow_http and urlsplit(value).scheme != "https":
            raise ConfigurationError(
                "SITE_URL",
                f"must be an https:// URL when DEBUG is off, not {value!r} (secure cookies, HSTS and the links"
                " in every email depend on it; ALLOW_HTTP_SITE_URL=true only for a local production-like run)",
            )
        return value

    def database(self, default_url: str) -> dict:
        value = self.env.str("DATABASE_URL", default="").strip() or default_url
        scheme, separator, _ = value.partition("://")
        if not separator or scheme not in DATABASE_SCHEMES:
            raise ConfigurationError(
                "DATABASE_URL", "is not a database URL like postgres://user:password@host:5432/name or sqlite:///path"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # django-environ warns before it fails; the error says it all
                config = environ.Env.db_url_config(value)
        except (ImproperlyConfigured, ValueError, KeyError) as error:
            raise ConfigurationError("DATABASE_URL", f"does not parse as a database URL ({error})") from None
        if not config.get("NAME"):
            raise ConfigurationError("DATABASE_URL", "names no database")
        if config["ENGINE"].endswith("sqlite3") and config["NAME"] != ":memory:":
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        return config

    def broker_url(self, default_url: str) -> str:
        value = (
            self.env.str("CELERY_BROKER_URL", default="").strip()
            or self.env.str("REDIS_URL", default="").strip()
            or default_url
        )
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in {"redis", "rediss", "filesystem", "amqp", "amqps", "memory"}:
            raise ConfigurationError("CELERY_BROKER_URL", f"is not a broker URL Celery can use: {value!r}")
        return value
