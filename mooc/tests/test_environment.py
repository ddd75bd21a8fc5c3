"""Settings come from the environment; a wrong one stops start-up with one line naming it."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from mooc.environment import ConfigurationError, Environment

PROJECT_DIR = Path(__file__).resolve().parents[2]


def environment(**variables) -> Environment:
    return Environment(environ_mapping=variables)


def test_secret_key_has_a_development_default_only_when_debug_is_on():
    assert environment().secret_key(debug=True).startswith("django-insecure")
    with pytest.raises(ConfigurationError) as refusal:
        environment().secret_key(debug=False)
    assert refusal.value.variable == "SECRET_KEY"
    assert "is not set" in str(refusal.value)


def test_a_short_secret_key_is_refused_in_production_but_a_long_one_is_used():
    with pytest.raises(ConfigurationError, match="SECRET_KEY is too short"):
        environment(SECRET_KEY="abc").secret_key(debug=False)
    assert environment(SECRET_KEY="k" * 50).secret_key(debug=False) == "k" * 50


@pytest.mark.parametrize("raw, expected", [("true", True), ("1", True), ("On", True), ("false", False), ("0", False), ("", None)])
def test_booleans_read_the_usual_spellings(raw, expected):
    default = object()
    assert environment(DEBUG=raw).bool("DEBUG", default=default) is (default if expected is None else expected)


def test_a_malformed_boolean_names_its_variable():
    with pytest.raises(ConfigurationError, match="DEBUG must be true or false, not 'maybe'"):
        environment(DEBUG="maybe").bool("DEBUG", default=False)


def test_numbers_are_checked():
    assert environment(CONN_MAX_AGE="30").int("CONN_MAX_AGE", default=60) == 30
    assert environment().int("CONN_MAX_AGE", default=60) == 60
    with pytest.raises(ConfigurationError, match="CONN_MAX_AGE must be a whole number"):
        environment(CONN_MAX_AGE="soon").int("CONN_MAX_AGE", default=60)
    with pytest.raises(ConfigurationError, match="TASK_RETRY_MAX_DELAY must be at least 1"):
        environment(TASK_RETRY_MAX_DELAY="0").int("TASK_RETRY_MAX_DELAY", default=60, minimum=1)


def test_database_url_defaults_and_parses_postgres():
    config = environment(DATABASE_URL="postgres://mooc:s3cret@db.internal:5433/mooc").database(default_url="sqlite:///:memory:")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == ("db.internal", 5433, "mooc", "mooc")
    default = environment().database(default_url="sqlite:///:memory:")
    assert default["ENGINE"] == "django.db.backends.sqlite3"


@pytest.mark.parametrize(
    "url", ["postgres//no-scheme-separator", "mysqlx://someone@host/db", "not a url", "postgres://u@host:notaport/db"]
)
def test_a_malformed_database_url_names_the_variable(url):
    with pytest.raises(ConfigurationError) as refusal:
        environment(DATABASE_URL=url).database(default_url="sqlite:///:memory:")
    assert refusal.value.variable == "DATABASE_URL"
    assert str(refusal.value).startswith("Configuration error: DATABASE_URL ")


def test_site_url_is_required_without_a_default_and_must_be_absolute():
    with pytest.raises(ConfigurationError, match="SITE_URL is not set"):
        environment().url("SITE_URL", default=None, schemes=("http", "https"))
    with pytest.raises(ConfigurationError, match="SITE_URL must be an absolute http or https URL"):
        environment(SITE_URL="mooc.example.org").url("SITE_URL", default=None, schemes=("http", "https"))
    assert environment(SITE_URL="https://mooc.example.org/").url("SITE_URL", None, ("https",)) == "https://mooc.example.org"


def test_the_development_site_url_follows_the_port_make_run_was_given():
    assert environment(SITE_PORT="8100").site_url(debug=True, allow_http=False) == "http://127.0.0.1:8100"
    assert environment(SITE_PORT="8100", SITE_URL="http://localhost:9000").site_url(debug=True, allow_http=False) == "http://localhost:9000"
    with pytest.raises(ConfigurationError, match="SITE_URL is not set"):
        environment(SITE_PORT="8100").site_url(debug=False, allow_http=False)  # production names its URL


def test_site_url_must_be_https_with_debug_off_unless_http_is_allowed_on_purpose():
    assert environment().site_url(debug=True, allow_http=False) == "http://127.0.0.1:8000"
    assert environment(SITE_URL="http://localhost:8000").site_url(debug=True, allow_http=False) == "http://localhost:8000"
    assert environment(SITE_URL="https://mooc.example.org").site_url(debug=False, allow_http=False) == "https://mooc.example.org"
    with pytest.raises(ConfigurationError, match="SITE_URL must be an https:// URL when DEBUG is off, not 'http://mooc.example.org'"):
        environment(SITE_URL="http://mooc.example.org").site_url(debug=False, allow_http=False)
    assert environment(SITE_URL="http://testserver").site_url(debug=False, allow_http=True) == "http://testserver"
    with pytest.raises(ConfigurationError, match="SITE_URL is not set"):
        environment().site_url(debug=False, allow_http=True)


def test_broker_url_prefers_celery_broker_url_then_redis_url_then_the_default():
    assert environment(CELERY_BROKER_URL="redis://a:6379/0", REDIS_URL="redis://b").broker_url("filesystem://") == "redis://a:6379/0"
    assert environment(REDIS_URL="redis://b:6379/1").broker_url("filesystem://") == "redis://b:6379/1"
    assert environment().broker_url("filesystem://") == "filesystem://"
    with pytest.raises(ConfigurationError, match="CELERY_BROKER_URL is not a broker URL"):
        environment(CELERY_BROKER_URL="localhost:6379").broker_url("filesystem://")


def test_anymail_settings_are_gathered_by_prefix():
    gathered = environment(ANYMAIL_MAILGUN_API_KEY="key-1", ANYMAIL_WEBHOOK_SECRET="", DEBUG="true").prefixed("ANYMAIL_")
    assert gathered == {"MAILGUN_API_KEY": "key-1"}


def run_manage(*args: str, **variables: str) -> subprocess.CompletedProcess:
    """Run manage.py in a fresh process with only the given settings in its environment."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=keep | {"DJANGO_READ_DOT_ENV": "false"} | variables,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_without_secret_key_stops_with_one_line():
    result = run_manage("check", SITE_URL="https://mooc.example.org")
    assert result.returncode != 0
    assert result.stderr.strip() == "Configuration error: SECRET_KEY is not set (required when DEBUG is off)"


def test_a_database_url_that_does_not_parse_stops_with_one_line():
    result = run_manage("check", DEBUG="true", DATABASE_URL="postgres://u@host:notaport/db")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Configuration error: DATABASE_URL"), result.stderr


def test_local_defaults_need_no_settings_at_all():
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print('SETTINGS', s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.EMAIL_BACKEND, s.SITE_URL, s.TIME_ZONE)"
    )
    result = run_manage("shell", "-c", script, DEBUG="true")
    assert result.returncode == 0, result.stderr
    settings_line = next(line for line in result.stdout.splitlines() if line.startswith("SETTINGS "))
    assert settings_line.split()[1:] == [
        "True",
        "django.db.backends.sqlite3",
        "filesystem://",
        "scheduler.outbox.OutboxEmailBackend",
        "http://127.0.0.1:8000",
        "UTC",
    ]


def test_the_local_defaults_pass_the_checks_without_a_warning(tmp_path):
    """`make run` migrates on SQLite: no warning at every command (the ledger's covering index is
    PostgreSQL's, built as a plain index there)."""
    result = run_manage("check", "--database", "default", "--fail-level", "WARNING", DEBUG="true",
                        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr + result.stdout


def production(**variables: str) -> dict[str, str]:
    """A production .env: DEBUG off, a long random SECRET_KEY, an https SITE_URL, a shared cache
    (not reached by these checks); no DATABASE_URL."""
    return {
        "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "SITE_URL": "https://mooc.example.org",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    } | variables


def test_a_production_environment_passes_the_deployment_checks_without_a_warning():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **production())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr + result.stdout


def test_production_with_an_http_site_url_stops_with_one_line():
    result = run_manage("check", **production(SITE_URL="http://mooc.example.org"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Configuration error: SITE_URL must be an https:// URL when DEBUG is off, not 'http://mooc.example.org'"
        " (secure cookies, HSTS and the links in every email depend on it;"
        " ALLOW_HTTP_SITE_URL=true only for a local production-like run)"
    ]
    allowed = run_manage("check", **production(SITE_URL="http://mooc.example.org", ALLOW_HTTP_SITE_URL="true"))
    assert allowed.returncode == 0, allowed.stderr


def test_production_without_a_shared_cache_stops_with_one_line():
    without = production()
    del without["REDIS_URL"]

    result = run_manage("check", **without)

    assert result.returncode != 0
    assert result.stderr.strip().startswith("Configuration error: REDIS_URL is not set (required when DEBUG is off")
    assert run_manage("check", **without, ALLOW_LOCAL_CACHE="true").returncode == 0


def test_production_sending_through_anymail_without_a_webhook_secret_stops_with_one_line():
    anymail = production(EMAIL_BACKEND="anymail.backends.postmark.EmailBackend", ANYMAIL_POSTMARK_SERVER_TOKEN="t")

    result = run_manage("check", **anymail)

    assert result.returncode != 0
    assert result.stderr.strip().startswith("Configuration error: ANYMAIL_WEBHOOK_SECRET must be set to user:password")
    assert run_manage("check", **anymail, ANYMAIL_WEBHOOK_SECRET="postmark:a-long-random-password").returncode == 0


def answers_over_http(tmp_path, **variables: str) -> dict[str, str]:
    """How a production-configured site answers: plain http requests for a page and for the
    health check, and an https request for a page that sets the CSRF cookie."""
    script = (
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "from django.test import Client; client = Client(HTTP_HOST='mooc.example.org'); "
        "page, health = client.get('/signup/sent/'), client.get('/healthz'); "
        "secure = client.get('/me/not-a-token/', secure=True); "
        "print('ANSWERS', page.status_code, page.get('Location'), health.status_code, "
        "secure.get('Strict-Transport-Security'), secure.cookies['csrftoken']['secure'], sep='|')"
    )
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    # The embedded broker, so that /healthz answers without a Redis server (the cache is not used).
    result = run_manage(
        "shell", "-c", script, DATABASE_URL=database, STATIC_MANIFEST="false", **production(CELERY_BROKER_URL="filesystem://", **variables)
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("ANSWERS|"))
    return dict(zip(["page", "location", "health", "hsts", "secure_cookie"], line.split("|")[1:], strict=True))


def test_production_redirects_http_to_https_except_the_health_check_and_sends_hsts(tmp_path):
    answers = answers_over_http(tmp_path)
    assert (answers["page"], answers["location"]) == ("301", "https://mooc.example.org/signup/sent/")
    assert answers["health"] == "200"  # the load balancer's plain http check reaches the app
    assert answers["hsts"] == "max-age=31536000; includeSubDomains"
    assert answers["secure_cookie"] == "True"


def test_hsts_and_the_redirect_follow_their_settings(tmp_path):
    answers = answers_over_http(
        tmp_path, SECURE_HSTS_SECONDS="3600", SECURE_HSTS_INCLUDE_SUBDOMAINS="false", SECURE_HSTS_PRELOAD="true",
        SECURE_SSL_REDIRECT="false",
    )
    assert (answers["page"], answers["location"]) == ("200", "None")
    assert answers["hsts"] == "max-age=3600; preload"


def test_admin_login_throttling_reads_its_limits():
    script = "from django.conf import settings as s; print('LIMITS', s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, sep='|')"
    limits = []
    for variables in [{}, {"ADMIN_LOGIN_FAILURE_LIMIT": "3", "ADMIN_LOGIN_LOCKOUT_MINUTES": "60"}]:
        result = run_manage("shell", "-c", script, DEBUG="true", **variables)
        assert result.returncode == 0, result.stderr
        limits.append(next(line for line in result.stdout.splitlines() if line.startswith("LIMITS|")))
    assert limits == ["LIMITS|5|0:15:00", "LIMITS|3|1:00:00"]
    refused = run_manage("check", DEBUG="true", ADMIN_LOGIN_FAILURE_LIMIT="0")
    assert refused.stderr.strip() == "Configuration error: ADMIN_LOGIN_FAILURE_LIMIT must be at least 1, not 0"
