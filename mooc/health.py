"""/healthz: is this site able to work? For load balancers, uptime checks and operators.

The database and the broker are critical: when either is down the answer is HTTP 503.
Reported too, without failing the check: the workers' heartbeats (one per queue), the overdue
emails (due over an hour ago, not sent), the cohorts whose sending paused itself after a fault
on our side (their slugs; the provider's answer is on the cohort's admin page) and the
providers' tracking events waiting to be applied. The web pages still work without workers,
and taking the site out of rotation would not help: these are for the monitoring that pages a
person.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from cohorts.selectors import cohorts_paused_by_fault
from mooc.celery import app as celery_app
from scheduler.events import tracking_backlog_status
from scheduler.planning import deliveries_overdue
from scheduler.selectors import workers_status

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2


def database_status() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        logger.warning("Health check: database unreachable: %s", error)
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True, "vendor": connection.vendor}


def broker_status() -> dict:
    # The timeouts bound a broker that accepts the connection and never answers, too.
    socket_timeouts = {"socket_timeout": BROKER_TIMEOUT_SECONDS, "socket_connect_timeout": BROKER_TIMEOUT_SECONDS}
    try:
        with celery_app.connection_for_write(connect_timeout=BROKER_TIMEOUT_SECONDS, transport_options=socket_timeouts) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS)
            transport = broker.transport_cls
    except Exception as error:  # kombu raises transport-specific errors; any of them means down.
        logger.warning("Health check: broker unreachable: %s", error)
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True, "transport": transport}


@never_cache
def healthz(request):
    # Side by side: each check is bounded by its own timeout, so the answer comes within the
    # longer of the two (the database's connect timeout, 2 s), not their sum.
    with ThreadPoolExecutor(max_workers=1) as background:
        broker_check = background.submit(broker_status)
        database = database_status()
        broker = broker_check.result()
    now = timezone.now()
    if database["ok"]:
        worker = workers_status(now)
        overdue = deliveries_overdue(now)
        paused = cohorts_paused_by_fault()
        deliveries = {"ok": overdue == 0 and not paused, "overdue": overdue, "paused_by_fault": paused}
        tracking = tracking_backlog_status(now)
    else:
        worker = deliveries = tracking = {"ok": False, "error": "database down"}
    healthy = database["ok"] and broker["ok"]
    body = {"status": "ok" if healthy else "down", "database": database, "broker": broker, "worker": worker, "deliveries": deliveries,
            "tracking_events": tracking}
    return JsonResponse(body, status=200 if healthy else 503)
