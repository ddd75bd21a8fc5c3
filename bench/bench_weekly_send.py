"""The weekly send: a cohort's week-1 email to every learner, through real Celery workers.

One cohort of the demo course (its default emails installed) with 10,000, then 100,000
confirmed learners in study groups of about ten, spread over a few time zones whose week-1
moment (the cohort's start date, 00:00 local) has passed, so the whole week falls due at
once. The scheduler's path as in production, on PostgreSQL and Redis: `deliveries_dispatch`
in this process puts the rows in the ledger and picks the chunks of 200, each chunk goes to
the delivery queue as a `deliveries_send_chunk` task, and two `celery worker --pool solo`
processes claim, render and send them through Anymail's test backend (one that keeps
nothing: mooc.testing.providers.DiscardingAnymailBackend), with no send-rate limit. The
clock runs from the dispatch until no ledger row is pending or sending. Setup (learners,
enrollments, groups, then ANALYZE, as autovacuum would) is not timed; only week-1 emails
are due (the learners confirmed 30 days ago and their group introductions are cleared), and
the ledger's counts are printed.

Also printed: the dispatch on its own; the SQL queries of one chunk, counted here in this
process on a separate cohort of 300 (a chunk of 200, then one of 100, so the fixed part and
the part per email show); the peak resident memory of each worker (VmHWM, read from /proc
at the end of the send); and a naive baseline in the same run: 2,000 of the learners mailed
one at a time in this process (load the enrollment and its group, the template and the
week, build the context, render, `EmailMultiAlternatives.send()` on its own connection;
no ledger), with our emails per second over its.

And the raw limit, in the same run once the workers have stopped: what the send would cost
with no ledger at all. In this one process, the first 10,000 of the cohort's learners (all
of them at 10,000) are taken 200 at a time as a chunk takes them (their enrollments with
learner and group, then scheduler.selectors.email_contexts), each email rendered with the
week's template in force (scheduler.services.email_render) and given its tag and metadata as
the workers give it, and handed to the workers' backend (DiscardingAnymailBackend) on one
connection with `send_messages`; no ledger row is read or written. Printed: its emails per
second, ours (the throughput above, dispatch included) over it, and ours per worker process
(ours / 2) over it. The target uses the first, the 2-worker send against the one-process raw
figure, as issue 11 measured it; the second is the cost of the ledger per process, since the
workers have both cores and the raw loop one. Both compare with a single process: on a
machine where something else takes a core, the two workers lose more than the raw loop does.

Target: 100,000 emails in under 5 minutes (over 330 per second) on the 2-core machine, our
send at least 50% of the raw limit's emails per second, worker memory flat from 10,000 to
100,000 learners, and a fixed number of queries per chunk.

Each size runs in its own process on a fresh PostgreSQL database at BENCH_POSTGRES_URL (see
_common.py), with a queue of its own on the Redis at BENCH_REDIS_URL (default
redis://127.0.0.1:6379/3). Without either server it prints why it was skipped. It takes a
few minutes.
"""

import datetime
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from _common import PROJECT_DIR, django_on_throwaway_database, postgres_unavailable, print_results, redis_unavailable

SIZES = (10_000, 100_000)
WORKERS = 2
CHUNK_SIZE = 200
NAIVE_LEARNERS = 2_000
RAW_LEARNERS = 10_000
RAW_TARGET = 0.5  # our emails per second over the raw limit's, at least
PROBE_LEARNERS = 300  # the separate cohort whose chunks are sent here, to count their queries
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
# Zones whose midnight of the cohort's start date (yesterday, in UTC) has passed, with weights.
TIME_ZONES = [("UTC", 2), ("Europe/Lisbon", 2), ("Europe/Berlin", 3), ("Asia/Kolkata", 3), ("Pacific/Kiritimati", 0.2)]
FIRST_NAMES = ["Ada", "Grace", "Alan", "Katherine", "Hedy", "Linus", "Margaret", "Edsger", "Barbara", ""]
EXPERIENCE = ["none", "some", "experienced"]
POLL_SECONDS = 0.25
STALLED_AFTER_SECONDS = 120  # no ledger row finished for this long: a worker is stuck, stop
LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")


def _queue_forget(queue: str) -> None:
    """Remove what the run's queue left in Redis (normally nothing but its bindings)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"*{queue}*"))
    if keys:
        client.delete(*keys)


class Worker:
    """One `celery worker --pool solo` subprocess on the delivery queue, in this environment.

    Its log is read in a thread: when it is ready, how many chunks it sent, and every line
    at WARNING or above.
    """

    def __init__(self, queue: str, number: int):
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "mooc", "worker",
                "--queues", queue, "--pool", "solo", "--concurrency", "1",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--hostname", f"bench-{number}-{queue}@%h", "--loglevel", "INFO",
            ],
            cwd=PROJECT_DIR,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.ready = threading.Event()
        self.chunks = 0
        self.problems: list[str] = []
        self.last_lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip()
            if line.endswith(" ready."):
                self.ready.set()
            elif "Chunk of " in line:
                self.chunks += 1
            if LOG_PROBLEM.search(line):
                self.problems.append(line)
            self.last_lines = (self.last_lines + [line])[-20:]

    def memory_mb(self, field: str) -> float:
        """VmRSS (resident now) or VmHWM (the peak resident size so far), in MB."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)


def _cohort_with_learners(course, size: int, slug: str):
    """A cohort whose week 1 is due now for `size` confirmed learners in groups; no other email due."""
    from django.db import connection
    from django.utils import timezone

    from cohorts.models import Cohort
    from scheduler.due import cohort_week_due
    from signups.groups import cohort_groups_form
    from signups.models import Enrollment, Learner

    start = timezone.now().date() - datetime.timedelta(days=1)
    cohort = Cohort.objects.create(
        course=course, name=f"Bench {slug}", slug=slug, start_date=start,
        signup_opens_on=start - datetime.timedelta(weeks=2), signup_closes_on=start,
        send_weekday=start.weekday(), send_time=datetime.time(0, 0),
    )
    zones, weights = zip(*TIME_ZONES)
    for zone in zones:
        if cohort_week_due(cohort, 1, zone) > timezone.now():
            raise SystemExit(f"bench_weekly_send: week 1 is not due yet in {zone}; choose zones east of it")
    rng = random.Random(size)
    long_ago = timezone.now() - datetime.timedelta(days=30)  # confirmed long ago: no welcome email due
    learners = Learner.objects.bulk_create(
        [
            Learner(email=f"{slug}-{n}@bench.invalid", first_name=rng.choice(FIRST_NAMES), timezone=zone,
                    experience=rng.choice(EXPERIENCE), confirmed_at=long_ago)
            for n, zone in enumerate(rng.choices(zones, weights, k=size))
        ],
        batch_size=5000,
    )
    Enrollment.objects.bulk_create(
        [Enrollment(learner=learner, course=course, cohort=cohort, status="active") for learner in learners],
        batch_size=5000,
    )
    cohort_groups_form(cohort, now=timezone.now())
    Enrollment.objects.filter(cohort=cohort).update(grouped_at=None)  # no group introduction due
    # The statistics autovacuum keeps in production (a server may run without it): with none,
    # PostgreSQL plans dispatch's "no ledger row yet" anti-join as a nested loop over the ledger.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return Cohort.objects.select_related("course").get(pk=cohort.pk)


def _send_through_workers(workers: list[Worker], queue: str) -> dict:
    """Dispatch, queue every chunk, and wait until no ledger row is pending or sending."""
    from django.utils import timezone

    from scheduler.planning import deliveries_dispatch
    from scheduler.models import Delivery
    from scheduler.tasks import deliveries_send_chunk

    started = time.perf_counter()
    report = deliveries_dispatch(timezone.now())
    dispatched = time.perf_counter()
    for chunk in report.chunks:
        deliveries_send_chunk.apply_async(args=[chunk], queue=queue)
    queued = time.perf_counter()
    unfinished = Delivery.objects.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING])
    remaining, last_progress = None, time.perf_counter()
    while (left := unfinished.count()) > 0:
        if left != remaining:
            remaining, last_progress = left, time.perf_counter()
        elif time.perf_counter() - last_progress > STALLED_AFTER_SECONDS or all(w.process.poll() is not None for w in workers):
            logs = "\n".join(line for worker in workers for line in worker.last_lines)
            raise SystemExit(f"bench_weekly_send: {left:,} deliveries still pending or sending and no progress; the workers said:\n{logs}")
        time.sleep(POLL_SECONDS)
    return {
        "total": time.perf_counter() - started,
        "dispatch": dispatched - started,
        "queueing": queued - dispatched,
        "rows": sum(map(len, report.chunks)),
        "chunks": len(report.chunks),
    }


def _ledger_counts() -> Counter:
    from django.db.models import Count

    from scheduler.models import Delivery

    rows = Delivery.objects.values("kind", "week_number", "status").annotate(count=Count("pk"))
    return Counter({(row["kind"], row["week_number"], row["status"]): row["count"] for row in rows})


def _naive_send(cohort, count: int) -> float:
    """Seconds to mail `count` of the cohort's learners the naive way: one learner at a time,
    every lookup again for each, each message on a connection of its own; no ledger."""
    from django.core.mail import EmailMultiAlternatives

    from cohorts.selectors import course_week
    from scheduler.models import EmailKind
    from scheduler.selectors import email_contexts, email_template_for, week_context
    from scheduler.services import delivery_header, email_render
    from signups.models import Enrollment

    enrollment_ids = list(Enrollment.objects.filter(cohort=cohort).order_by("pk").values_list("pk", flat=True)[:count])
    started = time.perf_counter()
    for enrollment_id in enrollment_ids:
        enrollment = Enrollment.objects.select_related("learner", "group", "cohort__course").get(pk=enrollment_id)
        own_cohort = enrollment.cohort
        template = email_template_for(own_cohort, EmailKind.WEEK, 1)
        week = week_context(course_week(own_cohort.course, 1), own_cohort.week_count)
        context = email_contexts(own_cohort, week, [enrollment], own_cohort.start_date)[enrollment.pk]
        rendered = email_render(template.current_version, context, delivery_header(EmailKind.WEEK, own_cohort.slug, 1, "naive"))
        message = EmailMultiAlternatives(subject=rendered.subject, body=rendered.text, to=[enrollment.learner.email], headers=rendered.headers)
        message.attach_alternative(rendered.html, "text/html")
        message.send()
    return time.perf_counter() - started


def _raw_send(cohort, count: int) -> float:
    """Seconds to render and hand `count` of the cohort's learners' week-1 emails to the workers'
    backend in this process, chunk by chunk as a worker does, with no ledger read or written."""
    from django.core.mail import EmailMultiAlternatives, get_connection

    from cohorts.selectors import course_week
    from scheduler.models import Delivery, EmailKind
    from scheduler.selectors import email_contexts, email_template_for, week_context
    from scheduler.services import delivery_header, email_render
    from scheduler.tracking import delivery_metadata, delivery_tag
    from signups.models import Enrollment

    enrollment_ids = list(Enrollment.objects.filter(cohort=cohort).order_by("pk").values_list("pk", flat=True)[:count])
    started = time.perf_counter()
    template = email_template_for(cohort, EmailKind.WEEK, 1)
    week = week_context(course_week(cohort.course, 1), cohort.week_count)
    tag = delivery_tag(cohort.course.slug, EmailKind.WEEK, 1)
    connection = get_connection()
    connection.open()
    try:
        for start in range(0, len(enrollment_ids), CHUNK_SIZE):
            enrollments = list(Enrollment.objects.filter(pk__in=enrollment_ids[start : start + CHUNK_SIZE]).select_related("learner", "group"))
            contexts = email_contexts(cohort, week, enrollments, cohort.start_date)
            for enrollment in enrollments:
                # Never saved: only what the metadata is read from, the enrollment's id standing in for the row's.
                row = Delivery(pk=enrollment.pk, learner=enrollment.learner, cohort=cohort, kind=EmailKind.WEEK, week_number=1)
                rendered = email_render(template.current_version, contexts[enrollment.pk], delivery_header(EmailKind.WEEK, cohort.slug, 1, row.pk))
                message = EmailMultiAlternatives(subject=rendered.subject, body=rendered.text, to=[enrollment.learner.email], headers=rendered.headers)
                message.attach_alternative(rendered.html, "text/html")
                message.metadata = delivery_metadata(row)
                message.tags = [tag]
                connection.send_messages([message])
    finally:
        connection.close()
    return time.perf_counter() - started


def _queries_per_chunk(course) -> list[tuple[int, int, int, int]]:
    """(rows, queries, SELECTs, emails sent) of each chunk of a separate small cohort, sent here."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from scheduler.planning import deliveries_dispatch
    from scheduler.sending import deliveries_send

    _cohort_with_learners(course, PROBE_LEARNERS, slug="probe")
    chunks = []
    for chunk in deliveries_dispatch(timezone.now()).chunks:
        with CaptureQueriesContext(connection) as queries:
            report = deliveries_send(chunk)
        selects = sum(1 for query in queries if query["sql"].lstrip().upper().startswith("SELECT"))
        chunks.append((len(chunk), len(queries), selects, report.sent))
    return chunks


def measure(size: int, summary_path: Path) -> None:
    queue = f"bench-weekly-send-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # Read by the settings of this process and of the workers, which inherit this environment.
    os.environ |= {
        "CELERY_BROKER_URL": REDIS_URL,
        "DELIVERY_QUEUE": queue,
        "EMAIL_BACKEND": "mooc.testing.providers.DiscardingAnymailBackend",
        "EMAIL_SEND_RATE_PER_SECOND": "0",
        "DELIVERY_CHUNK_SIZE": str(CHUNK_SIZE),
    }
    with django_on_throwaway_database("postgresql"):
        # The week fell due at midnight, over an hour ago by design: dispatch rightly warns it is overdue.
        logging.getLogger("scheduler.planning").addFilter(lambda record: not record.getMessage().startswith("Overdue:"))
        # Imported only now: Django must not read its settings before the environment is set.
        from cohorts.models import StudyGroup
        from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read
        from scheduler.services import email_templates_install_defaults

        course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
        email_templates_install_defaults(course)
        cohort = _cohort_with_learners(course, size, slug="bench")
        groups = StudyGroup.objects.filter(cohort=cohort).count()

        workers = [Worker(queue, number) for number in range(WORKERS)]
        try:
            for worker in workers:
                if not worker.ready.wait(timeout=60):
                    raise SystemExit("bench_weekly_send: a worker was not ready in 60 s; it said:\n" + "\n".join(worker.last_lines))
            ready_mb = [worker.memory_mb("VmRSS") for worker in workers]
            send = _send_through_workers(workers, queue)
            peak_mb = [worker.memory_mb("VmHWM") for worker in workers]
        finally:
            for worker in workers:
                worker.stop()
            _queue_forget(queue)
        ledger = _ledger_counts()
        raw_count = min(RAW_LEARNERS, size)
        raw_seconds = _raw_send(cohort, raw_count)
        naive_seconds = _naive_send(cohort, NAIVE_LEARNERS)
        chunk_queries = _queries_per_chunk(course)

    week_one = {status: ledger[("week", 1, status)] for status in ("sent", "failed", "skipped")}
    others = sum(count for (kind, week_number, _), count in ledger.items() if (kind, week_number) != ("week", 1))
    ours = week_one["sent"] / send["total"]
    naive = NAIVE_LEARNERS / naive_seconds
    raw = raw_count / raw_seconds
    (full_rows, full_queries, full_selects, _), *rest = chunk_queries
    if rest:
        rows, queries, selects, _ = rest[0]
        per_email = (full_queries - queries) / (full_rows - rows)
        queries_note = f"a chunk of {rows}: {queries}, {selects} SELECTs; so {full_queries - per_email * full_rows:.0f} + {per_email:.0f} per email"
    else:
        queries_note = "one chunk only"
    problems = [line for worker in workers for line in worker.problems]
    print_results(
        f"weekly send on PostgreSQL + Redis: week 1 to {size:,} learners in {groups:,} groups, {WORKERS} Celery workers (solo pool)",
        [
            ("total", f"{send['total']:.1f}", "s from dispatch to the last ledger row sent"),
            ("throughput", f"{ours:,.0f}", "emails/s (target: over 330, 100,000 in under 5 minutes)"),
            ("dispatch", f"{send['dispatch']:.2f}", f"s to put {send['rows']:,} rows in the ledger and pick {send['chunks']:,} chunks of {CHUNK_SIZE}"),
            ("queueing", f"{send['queueing']:.2f}", "s to hand the chunks to Redis"),
            ("ledger, week 1", f"{week_one['sent']:,}", f"sent, {week_one['failed']:,} failed, {week_one['skipped']:,} skipped ({others:,} rows of other emails)"),
            ("chunks per worker", ", ".join(str(worker.chunks) for worker in workers), "(from their logs)"),
            ("worker peak memory", ", ".join(f"{mb:.0f}" for mb in peak_mb), f"MB resident (VmHWM) per worker; {', '.join(f'{mb:.0f}' for mb in ready_mb)} MB when ready"),
            ("SQL per chunk", str(full_queries), f"queries for a chunk of {full_rows}, {full_selects} SELECTs ({queries_note})"),
            ("raw limit", f"{raw:,.0f}", f"emails/s, rendered and handed to the backend in one process, no ledger ({raw_count:,} learners, {raw_seconds:.1f} s)"),
            ("ours / raw", f"{ours / raw:.0%}", f"of the raw limit, our {WORKERS} workers against its one process (target: at least {RAW_TARGET:.0%})"),
            ("per worker / raw", f"{ours / WORKERS / raw:.0%}", f"of the raw limit per process ({ours / WORKERS:,.0f} emails/s per worker against {raw:,.0f})"),
            ("naive loop", f"{naive:,.0f}", f"emails/s, one learner at a time in one process ({NAIVE_LEARNERS:,} learners, no ledger)"),
            ("ours / naive", f"{ours / naive:.1f}", "x the naive loop's emails per second"),
            ("worker log", str(len(problems)), "lines at WARNING or above"),
        ],
    )
    for line in problems[:10]:
        print(f"  worker said: {line}")
    if problems:
        print()
    summary_path.write_text(json.dumps({
        "size": size, "peak_mb": peak_mb, "emails_per_second": ours, "seconds": send["total"], "raw_per_second": raw,
    }))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--size" and sys.argv[3] == "--summary":
        measure(int(sys.argv[2]), Path(sys.argv[4]))
        return
    if reason := postgres_unavailable() or redis_unavailable(REDIS_URL):
        print(f"weekly send: skipped, {reason}\n")
        return
    with tempfile.TemporaryDirectory(prefix="mooc-bench-") as folder:
        summaries = []
        for size in SIZES:
            summary = Path(folder) / f"{size}.json"
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--size", str(size), "--summary", str(summary)], check=True)
            summaries.append(json.loads(summary.read_text()))
    print_results(
        "weekly send as the cohort grows (each size on its own database and workers)",
        [
            (
                f"{run['size']:,} learners", f"{max(run['peak_mb']):.0f}",
                f"MB peak per worker, {run['emails_per_second']:,.0f} emails/s in {run['seconds']:.0f} s;"
                f" raw limit {run['raw_per_second']:,.0f}/s, ours {run['emails_per_second'] / run['raw_per_second']:.0%} of it",
            )
            for run in summaries
        ],
    )


if __name__ == "__main__":
    main()
