"""Admin pages for a 100,000-learner round: the cohort's page and the delivery ledger's list.

One round of 100,000 confirmed learners in 40 time zones, formed into about 10,000 groups, and
a ledger of 1.1 million rows (eleven emails each: welcome, group introduction, 8 weeks, the
end), on PostgreSQL (the production database; VACUUM ANALYZEd as autovacuum would). Each page is
fetched through Django's full stack (test client, a superuser, DEBUG off) five times; printed:
the median and slowest time and the SQL queries of one fetch.

Target (issue 13): each page under 1 s with a fixed number of queries. Needs BENCH_POSTGRES_URL's
server; prints why when it is skipped. BENCH_SHOW_QUERIES=1 prints the slowest statements of each
page, BENCH_PROFILE=1 a profile of the cohort page.
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_on_throwaway_database, postgres_unavailable, print_results  # noqa: E402

LEARNERS = 100_000
ZONES = ["America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin", "Africa/Nairobi",
         "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney"] * 4


def main() -> None:
    if reason := postgres_unavailable():
        print(f"admin pages: skipped, {reason}\n")
        return
    with django_on_throwaway_database("postgresql"):
        import datetime

        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext
        from django.urls import reverse
        from django.utils import timezone

        from cohorts.models import Cohort, Course
        from scheduler.models import Delivery
        from signups.groups import cohort_groups_form
        from signups.models import Enrollment, Learner

        now = timezone.now()
        start = now.date() - datetime.timedelta(weeks=3)
        course = Course.objects.create(title="Bench course", slug="bench", week_count=8)
        cohort = Cohort.objects.create(course=course, name="Bench round", slug="bench-round", start_date=start,
                                       signup_opens_on=start - datetime.timedelta(weeks=4), signup_closes_on=start)
        learners = Learner.objects.bulk_create(
            [Learner(email=f"l{n}@bench.invalid", first_name=f"L{n}", timezone=ZONES[n % len(ZONES)], experience="some",
                     confirmed_at=now) for n in range(LEARNERS)], batch_size=5000)
        Enrollment.objects.bulk_create(
            [Enrollment(learner=learner, course=course, cohort=cohort, status="active", mailable_since=now) for learner in learners],
            batch_size=5000)
        cohort_groups_form(cohort, now=now)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Delivery._meta.db_table} (learner_id, cohort_id, kind, week_number, status, due_at, reason_code,"
                " reason, attempts, provider_message_id, created_at, updated_at, sent_at)"
                " SELECT l.id, %s, e.kind, e.week, 'sent', %s, '', '', 1, 'msg-' || l.id || '-' || e.kind || e.week, %s, %s, %s"
                f" FROM {Learner._meta.db_table} l CROSS JOIN (VALUES ('welcome', 0), ('group_intro', 0), ('week', 1), ('week', 2),"
                " ('week', 3), ('week', 4), ('week', 5), ('week', 6), ('week', 7), ('week', 8), ('course_end', 0)) AS e(kind, week)",
                [cohort.pk, now, now, now, now],
            )
            cursor.execute("VACUUM ANALYZE")  # as autovacuum would, after a load this size
        rows = Delivery.objects.count()
        get_user_model().objects.create_superuser("bench", "bench@bench.invalid", "bench-password")
        client = Client()
        client.force_login(get_user_model().objects.get(username="bench"))

        def fetch(url, query=None):
            seconds = []
            for _ in range(5):
                started = time.perf_counter()
                response = client.get(url, query or {})
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, response.status_code
            with CaptureQueriesContext(connection) as queries:
                client.get(url, query or {})
            if os.environ.get("BENCH_SHOW_QUERIES"):
                for statement in sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:5]:
                    print(f"    {statement['time']} s  {statement['sql'][:160]}")
            return f"{statistics.median(seconds) * 1000:.0f}", f"ms median of 5 (slowest {max(seconds) * 1000:.0f} ms), {len(queries)} queries"

        cohort_url = reverse("admin:cohorts_cohort_change", args=[cohort.pk])
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.runcall(client.get, cohort_url)
            pstats.Stats(profile).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(25)
        ledger_url = reverse("admin:scheduler_delivery_changelist")
        results = [
            ("cohort page", *fetch(cohort_url)),
            ("its groups, page 100", *fetch(cohort_url, {"groups_page": 100})),
            ("ledger list", *fetch(ledger_url)),
            ("ledger, one cohort", *fetch(ledger_url, {"cohort__id__exact": cohort.pk})),
            ("ledger, sent, week", *fetch(ledger_url, {"status__exact": "sent", "kind__exact": "week"})),
            ("ledger, an address", *fetch(ledger_url, {"q": "l777@bench.invalid"})),
        ]
    print_results(f"admin pages on postgresql: a round of {LEARNERS:,} learners, {rows:,} ledger rows", results)


if __name__ == "__main__":
    main()
