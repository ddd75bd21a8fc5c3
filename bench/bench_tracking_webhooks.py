"""Tracking events per second end to end: Postmark's webhook POSTs through gunicorn to the applied row.

The production path on PostgreSQL and Redis: `gunicorn mooc.wsgi` (DEBUG off, the WEBHOOK_SECRET
basic auth, the whole middleware stack) stores each event (scheduler/events.py) and asks for the
apply task through Redis (gathered for TRACKING_APPLY_GATHER_MS in each process, then debounced);
one real `celery worker` on the default queue applies them in batches. Setup, not timed: one cohort of the demo course with LEARNERS learners, each with a
SENT week-1 row in the ledger, and the payloads: a Delivery for every email but the bounced ones,
an Open for OPENED of them, a hard Bounce for BOUNCED, in a shuffled order, each as Postmark
posts it (one event per request, the metadata our emails carry).

The clock runs from the first POST until every event is applied: no TrackingEvent left with
`applied_at` unset, every row's delivered_at / opened_at / bounced_at set as its events say, and
every bounced learner's mail stopped (checked after the clock stops, and printed). The client is
CLIENTS threads in this process, each with its own keep-alive connection (http.client); it
shares the two cores with gunicorn, the worker and PostgreSQL, as a load balancer would not.

Printed: requests accepted per second (the POSTs alone), events per second end to end, request
latency p50/p95/p99 as the client sees it, and how long the worker took after the last POST.
Target: at least 500 events per second end to end (issue 14).

Needs PostgreSQL at BENCH_POSTGRES_URL (a throwaway database, see _common.py) and Redis at
BENCH_HOOKS_REDIS_URL (default redis://127.0.0.1:6379/11, the cache) and BENCH_HOOKS_BROKER_URL
(default redis://127.0.0.1:6379/12, the broker): both databases are emptied at the start, so
give it ones nothing else uses. BENCH_HOOKS_DATABASE names the throwaway database (default
mooc_bench_<pid>). Without either server it prints why it was skipped.
"""

import base64
import datetime
import json
import os
import random
import time
import uuid

from _common import (
    GUNICORN_THREADS, GUNICORN_WORKER_CLASS, GUNICORN_WORKERS, Gunicorn, cpu_seconds, django_on_throwaway_database, free_port,
    latency_rows, postgres_unavailable, posts_send, print_results, redis_unavailable,
)

LEARNERS = int(os.environ.get("BENCH_HOOKS_LEARNERS", "20000"))
OPENED = 0.5  # of the emails delivered
BOUNCED = 0.02  # of the emails: a hard bounce instead of a delivery
CLIENTS = int(os.environ.get("BENCH_HOOKS_CLIENTS", "6"))  # client threads, one keep-alive connection each
TARGET = 500  # events per second end to end, at least
SECRET = "bench-tracker:bench-secret"
CACHE_URL = os.environ.get("BENCH_HOOKS_REDIS_URL", "redis://127.0.0.1:6379/11")
BROKER_URL = os.environ.get("BENCH_HOOKS_BROKER_URL", "redis://127.0.0.1:6379/12")
STALLED_AFTER_SECONDS = 120


def _seed(size: int):
    """A cohort with `size` learners, each with a SENT week-1 row; returns [(delivery id, learner public id, email)]."""
    from django.db import connection
    from django.utils import timezone

    from cohorts.models import Cohort
    from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read
    from scheduler.models import Delivery, EmailKind
    from signups.models import Enrollment, Learner

    course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
    now = timezone.now()
    start = now.date() - datetime.timedelta(days=3)
    cohort = Cohort.objects.create(
        course=course, name="Bench", slug="bench", start_date=start,
        signup_opens_on=start - datetime.timedelta(weeks=4), signup_closes_on=start,
    )
    learners = Learner.objects.bulk_create(
        [Learner(email=f"hooks-{n}@bench.invalid", first_name="Ada", timezone="UTC", experience="some",
                 confirmed_at=now - datetime.timedelta(days=30)) for n in range(size)],
        batch_size=5000,
    )
    Enrollment.objects.bulk_create(
        [Enrollment(learner=learner, course=course, cohort=cohort, status="active") for learner in learners], batch_size=5000
    )
    sent = now - datetime.timedelta(hours=2)
    rows = Delivery.objects.bulk_create(
        [Delivery(learner=learner, cohort=cohort, kind=EmailKind.WEEK, week_number=1, status=Delivery.Status.SENT,
                  due_at=sent, sent_at=sent, attempts=1, provider_message_id=str(uuid.uuid4())) for learner in learners],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would keep them
    return [(row.pk, str(learner.public_id), learner.email, row.provider_message_id) for row, learner in zip(rows, learners)]


def _payloads(rows) -> tuple[list[bytes], dict]:
    """Postmark's payloads for the rows, shuffled (a fixed seed), and what they should do."""
    draw = random.Random(14)
    stamp = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    bodies, expected = [], {"delivered": set(), "opened": set(), "bounced": set(), "bounced_learners": set()}
    for number, (pk, public_id, email, message_id) in enumerate(rows):
        common = {"ServerID": 1, "MessageStream": "broadcast", "MessageID": message_id, "Tag": "gentle-python-week-1",
                  "Metadata": {"delivery": str(pk), "learner": public_id}}
        fate = draw.random()
        if fate < BOUNCED:
            bodies.append({"RecordType": "Bounce", **common, "ID": 10**9 + number, "Type": "HardBounce", "TypeCode": 1,
                           "Email": email, "BouncedAt": stamp, "Description": "Unknown user",
                           "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist."})
            expected["bounced"].add(pk)
            expected["bounced_learners"].add(public_id)
            continue
        bodies.append({"RecordType": "Delivery", **common, "Recipient": email, "DeliveredAt": stamp, "Details": "250 OK"})
        expected["delivered"].add(pk)
        if fate < BOUNCED + OPENED * (1 - BOUNCED):
            bodies.append({"RecordType": "Open", **common, "Recipient": email, "ReceivedAt": stamp, "FirstOpen": True,
                           "Platform": "Desktop", "UserAgent": "Mozilla/5.0"})
            expected["opened"].add(pk)
    draw.shuffle(bodies)
    return [json.dumps(body).encode() for body in bodies], expected


def _post_all(port: int, bodies: list[bytes]) -> tuple[list[float], list[int], float, float]:
    """POST every body from CLIENTS threads; (latencies, non-200 statuses, first POST moment, last answer moment)."""
    headers = {"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(SECRET.encode()).decode()}
    shares = [[("/anymail/postmark/tracking/", body) for body in bodies[n::CLIENTS]] for n in range(CLIENTS)]
    return posts_send(port, shares, headers, lambda status, _: status == 200)


def _wait_applied(total: int, worker) -> float:
    from scheduler.models import TrackingEvent

    unapplied = TrackingEvent.objects.filter(applied_at__isnull=True)
    last, last_progress = None, time.perf_counter()
    while True:
        stored = TrackingEvent.objects.count()
        left = unapplied.count()
        if stored >= total and left == 0:
            return time.perf_counter()
        if (stored, left) != last:
            last, last_progress = (stored, left), time.perf_counter()
        elif time.perf_counter() - last_progress > STALLED_AFTER_SECONDS or worker.process.poll() is not None:
            raise SystemExit(f"bench_tracking_webhooks: {stored:,} of {total:,} stored, {left:,} unapplied, no progress; the worker said:\n"
                             + "\n".join(worker.last_lines))
        time.sleep(0.05)


def _check(expected: dict) -> dict:
    from scheduler.models import Delivery
    from signups.models import Learner

    rows = Delivery.objects.all()
    found = {
        "delivered": set(rows.filter(delivered_at__isnull=False).values_list("pk", flat=True)),
        "opened": set(rows.filter(opened_at__isnull=False).values_list("pk", flat=True)),
        "bounced": set(rows.filter(bounced_at__isnull=False).values_list("pk", flat=True)),
        "bounced_learners": {str(public_id) for public_id in Learner.objects.filter(unsubscribed_at__isnull=False).values_list("public_id", flat=True)},
    }
    wrong = {name: len(found[name] ^ expected[name]) for name in expected}
    if any(wrong.values()):
        raise SystemExit(f"bench_tracking_webhooks: the database does not show what the events say (differences: {wrong})")
    return {name: len(values) for name, values in found.items()}


def measure() -> None:
    import redis

    for url in (CACHE_URL, BROKER_URL):
        redis.Redis.from_url(url).flushdb()
    os.environ |= {
        "REDIS_URL": CACHE_URL, "CELERY_BROKER_URL": BROKER_URL, "ALLOW_LOCAL_CACHE": "false",
        "ANYMAIL_WEBHOOK_SECRET": SECRET, "EMAIL_BACKEND": "mooc.testing.providers.DiscardingAnymailBackend",
    }
    with django_on_throwaway_database("postgresql", name=os.environ.get("BENCH_HOOKS_DATABASE")):
        from bench_weekly_send import Worker

        from scheduler.models import TrackingEvent

        rows = _seed(LEARNERS)
        bodies, expected = _payloads(rows)
        port = free_port()
        os.environ["ALLOWED_HOSTS"] = "127.0.0.1"  # what gunicorn's requests name (read by its processes)
        gunicorn = Gunicorn(port, "bench_tracking_webhooks")
        worker = Worker("celery", 1)
        try:
            gunicorn.wait_ready()
            if not worker.ready.wait(timeout=60):
                raise SystemExit("bench_tracking_webhooks: the worker was not ready in 60 s; it said:\n" + "\n".join(worker.last_lines))
            cpu_before = cpu_seconds(gunicorn.process.pid), cpu_seconds(worker.process.pid)
            latencies, failures, first, last_answer = _post_all(port, bodies)
            applied = _wait_applied(len(bodies), worker)
            cpu_web = cpu_seconds(gunicorn.process.pid) - cpu_before[0]
            cpu_worker = cpu_seconds(worker.process.pid) - cpu_before[1]
        finally:
            gunicorn.stop()
            worker.stop()
        counts = _check(expected)
        stored = TrackingEvent.objects.count()

    if failures:
        raise SystemExit(f"bench_tracking_webhooks: {len(failures)} POSTs not answered 200 (e.g. {failures[:5]})")
    posting = last_answer - first
    total = applied - first
    rate = len(bodies) / total
    print_results(
        f"tracking webhooks on PostgreSQL + Redis: {len(bodies):,} Postmark events for {LEARNERS:,} emails, gunicorn "
        f"({GUNICORN_WORKERS} {GUNICORN_WORKER_CLASS} workers x {GUNICORN_THREADS} threads), 1 Celery worker, {CLIENTS} keep-alive clients",
        [
            ("accepted", f"{len(bodies) / posting:,.0f}", f"requests/s ({len(bodies):,} POSTs answered 200 in {posting:.1f} s)"),
            ("end to end", f"{rate:,.0f}", f"events/s, first POST to every event applied ({total:.1f} s; target: at least {TARGET})"),
            *latency_rows(latencies),
            ("CPU per event", f"{cpu_web / len(bodies) * 1000:.2f}", f"ms in gunicorn, {cpu_worker / len(bodies) * 1000:.2f} ms in the worker "
             f"(the machine's load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"),
            ("apply tail", f"{applied - last_answer:.1f}", "s from the last answer to the last event applied"),
            ("stored", f"{stored:,}", f"events; rows delivered {counts['delivered']:,}, opened {counts['opened']:,}, "
             f"bounced {counts['bounced']:,}; learners stopped {counts['bounced_learners']:,} (all as the events say)"),
            ("worker log", str(len(worker.problems)), "lines at WARNING or above"),
        ],
    )
    for line in worker.problems[:10]:
        print(f"  worker said: {line}")
    if rate < TARGET:
        print(f"  below the target of {TARGET} events/s\n")


def main() -> None:
    if reason := postgres_unavailable() or redis_unavailable(CACHE_URL, BROKER_URL):
        print(f"tracking webhooks: skipped, {reason}\n")
        return
    measure()


if __name__ == "__main__":
    main()
