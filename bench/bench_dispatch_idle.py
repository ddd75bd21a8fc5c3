"""An idle dispatch minute: what the per-minute pass costs when nothing new is due.

Three running rounds of an 8-week course (started 1, 3 and 5 weeks ago) share 100,000
confirmed learners in 40 time zones, grouped. A first pass puts every email that fell due
in the ledger (timed and printed: the first pass after a deploy), and those rows are then
marked sent, as the workers would. Then one pass a minute for 20 minutes, at moments when
no time zone's email falls due and nobody joins: the median and slowest pass, and the SQL
queries of one. Then the same with one learner joining a round in the middle of a week (their
week is due at once): the pass that plans them.

Target (issue 13): an idle minute with 100,000 learners in running rounds under 50 ms, a
fixed number of queries whatever the size. Runs on SQLite and, when BENCH_POSTGRES_URL's
server answers, on PostgreSQL; each in its own process.
"""

import datetime
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_on_throwaway_database, print_results, run_on_each_database  # noqa: E402

LEARNERS = 100_000
ZONES = [
    "Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver", "America/Chicago", "America/New_York",
    "America/Sao_Paulo", "Atlantic/Azores", "Europe/Lisbon", "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Athens",
    "Africa/Lagos", "Africa/Nairobi", "Asia/Dubai", "Asia/Karachi", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Dhaka",
    "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Adelaide", "Australia/Sydney", "Pacific/Auckland",
    "America/Mexico_City", "America/Bogota", "America/Halifax", "America/St_Johns", "Europe/Madrid", "Europe/Warsaw",
    "Europe/Kyiv", "Asia/Tehran", "Asia/Singapore", "Asia/Manila", "Asia/Seoul", "Australia/Perth", "Pacific/Fiji", "UTC",
]


def measure(database: str) -> None:
    with django_on_throwaway_database(database):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from cohorts.models import Cohort, Course
        from scheduler.models import Delivery
        from scheduler.planning import deliveries_dispatch
        from signups.groups import cohort_groups_form
        from signups.models import Enrollment, Learner

        # A Thursday 03:30 UTC: every zone's Monday 09:00 of this week is past, the next is days away.
        now = datetime.datetime(2026, 12, 3, 3, 30, tzinfo=datetime.UTC)
        monday = now.date() - datetime.timedelta(days=now.weekday())
        course = Course.objects.create(title="Bench course", slug="bench", week_count=8)
        cohorts = [
            Cohort.objects.create(course=course, name=f"Round {n}", slug=f"round-{n}", start_date=monday - datetime.timedelta(weeks=weeks),
                                  signup_opens_on=monday - datetime.timedelta(weeks=weeks + 4),
                                  signup_closes_on=monday - datetime.timedelta(weeks=weeks) + datetime.timedelta(days=6))
            for n, weeks in enumerate([0, 2, 4], start=1)
        ]
        confirmed = now - datetime.timedelta(weeks=8)
        learners = Learner.objects.bulk_create(
            [Learner(email=f"l{n}@bench.invalid", timezone=ZONES[n % len(ZONES)], experience="some", confirmed_at=confirmed)
             for n in range(LEARNERS)], batch_size=5000,
        )
        Enrollment.objects.bulk_create(
            [Enrollment(learner=learner, course=course, cohort=cohorts[n % 3], status="active", mailable_since=confirmed)
             for n, learner in enumerate(learners)], batch_size=5000,
        )
        for cohort in cohorts:
            cohort_groups_form(cohort, now=confirmed)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")

        started = time.perf_counter()
        first = deliveries_dispatch(now)
        first_seconds = time.perf_counter() - started
        planned = sum(first.planned.values())
        Delivery.objects.update(status=Delivery.Status.SENT, sent_at=now, queued_at=now)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")

        seconds = []
        for minute in range(1, 21):
            moment = now + datetime.timedelta(minutes=minute)
            started = time.perf_counter()
            report = deliveries_dispatch(moment)
            seconds.append(time.perf_counter() - started)
            assert not report.planned and not report.chunks, "an idle minute planned something"
        with CaptureQueriesContext(connection) as queries:
            deliveries_dispatch(now + datetime.timedelta(minutes=21))

        late = Learner.objects.create(email="late@bench.invalid", timezone="Europe/Lisbon", experience="none", confirmed_at=now)
        joined = now + datetime.timedelta(minutes=22)
        Enrollment.objects.create(learner=late, course=course, cohort=cohorts[1], status="active", mailable_since=joined)
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as late_queries:
            late_report = deliveries_dispatch(joined + datetime.timedelta(seconds=30))
        late_seconds = time.perf_counter() - started

    print_results(
        f"idle dispatch on {database}: {LEARNERS:,} learners in 3 running rounds, {len(ZONES)} time zones",
        [
            ("first pass", f"{first_seconds:.2f}", f"s ({planned:,} ledger rows planned)"),
            ("idle minute", f"{statistics.median(seconds) * 1000:.1f}", f"ms median of 20 (slowest {max(seconds) * 1000:.1f} ms)"),
            ("SQL queries", str(len(queries)), "in one idle pass"),
            ("a late joiner", f"{late_seconds * 1000:.1f}", f"ms for the pass that plans them ({sum(late_report.planned.values())} rows, {len(late_queries)} queries)"),
        ],
    )


def main() -> None:
    run_on_each_database(str(Path(__file__).resolve()), "idle dispatch", measure)


if __name__ == "__main__":
    main()
