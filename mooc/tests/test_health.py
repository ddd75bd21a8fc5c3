"""/healthz answers 200 with the status of the database and the broker, and 503 when one is down."""

import datetime
import os
import socket
import subprocess
import sys

import pytest
from django.db import OperationalError, connection

from mooc.testing.fixtures import PROJECT_DIR
from scheduler.services import heartbeat_record
from scheduler.tests.helpers import workers_report_in

pytestmark = pytest.mark.django_db


def test_up(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "vendor": connection.vendor}
    assert body["broker"]["ok"] is True
    assert response["Cache-Control"].startswith("max-age=0")


def test_broker_down(client, monkeypatch):
    # Nothing listens on port 1: a real connection failure, not a mock. Celery reads its
    # broker from this variable before its configuration, so this is where to point it.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["broker"]["ok"] is False
    assert body["database"]["ok"] is True


def test_database_down(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")

    monkeypatch.setattr(connection, "ensure_connection", refuse)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["database"] == {"ok": False, "error": "OperationalError"}
    assert "5432" not in response.content.decode()  # details go to the log, not to the public


def test_the_worker_heartbeat_is_reported_but_does_not_fail_the_check(client, settings, clock):
    settings.WORKER_HEARTBEAT_STALE_AFTER = 300
    never = {"ok": False, "last_seen": None, "seconds_ago": None}
    assert client.get("/healthz").json()["worker"] == {
        **never, "queues": {"celery": never, "mail": never, "transactional": never},
    }

    workers_report_in(clock.now() - datetime.timedelta(minutes=10))
    stale = client.get("/healthz")
    assert stale.status_code == 200
    assert stale.json()["worker"]["ok"] is False
    assert stale.json()["worker"]["seconds_ago"] >= 600

    workers_report_in(clock.now())
    assert client.get("/healthz").json()["worker"]["ok"] is True


def test_a_silent_mail_worker_is_reported_while_the_jobs_worker_runs(client, clock):
    workers_report_in(clock.now() - datetime.timedelta(minutes=30))
    heartbeat_record(now=clock.now(), queue="celery")
    heartbeat_record(now=clock.now(), queue="transactional")

    worker = client.get("/healthz").json()["worker"]

    assert worker["ok"] is False  # not every queue is served
    assert (worker["seconds_ago"], worker["queues"]["celery"]["ok"], worker["queues"]["transactional"]["ok"]) == (0, True, True)
    assert worker["queues"]["mail"]["ok"] is False and worker["queues"]["mail"]["seconds_ago"] == 30 * 60


def test_a_database_and_a_broker_that_never_answer_get_a_503_within_three_seconds():
    """Both accept the connection (the kernel does, into the listen backlog) and never say a
    word: the site's own timeouts, not gunicorn's, must end the check."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        probe = (
            "import time, django; django.setup()\n"
            "from django.test import Client\n"
            # The site's modules load first (the URLs import every view, Anymail's webhooks and
            # boto3 among them): a worker does that once, at its first request, and the check's
            # timeouts are what is measured here.
            "from django.urls import get_resolver; get_resolver().url_patterns\n"
            "started = time.monotonic(); response = Client().get('/healthz', HTTP_HOST='127.0.0.1')\n"
            "print(response.status_code, round(time.monotonic() - started, 2), response.json()['database']['ok'], response.json()['broker']['ok'])\n"
        )
        keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
        result = subprocess.run(
            [sys.executable, "-c", probe], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
            env=keep | {
                "DJANGO_SETTINGS_MODULE": "mooc.settings", "DJANGO_READ_DOT_ENV": "false", "DEBUG": "true",
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/mooc", "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
            },
        )

    status, seconds, database_ok, broker_ok = result.stdout.split()
    assert (status, database_ok, broker_ok) == ("503", "False", "False"), result.stderr
    assert float(seconds) < 3


def test_tracking_events_waiting_too_long_are_reported_but_do_not_fail_the_check(client, clock):
    from scheduler.models import TrackingEvent

    assert client.get("/healthz").json()["tracking_events"] == {"ok": True, "waiting": 0, "oldest_seconds": 0}
    TrackingEvent.objects.create(
        esp="postmark", event_key="k1", event_type="delivered", occurred_at=clock.now(), received_at=clock.now() - datetime.timedelta(minutes=11)
    )
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["tracking_events"] == {"ok": False, "waiting": 1, "oldest_seconds": 660}
