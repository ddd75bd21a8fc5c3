"""The cohort page's "Due in the next 7 days" (scheduler/forecast.py) for a large running round.

One round in its third week, of LEARNERS learners in groups of 10 across ten time zones, all
mailable; its ledger as the real dispatch made it (welcome, group introduction, weeks 1 to 3,
each sent). Learners and enrollments are loaded with INSERT ... SELECT; the ledger by the
dispatch itself, passes at each week's moments, then marked sent in one UPDATE.

Timed, five times each (median and slowest), with the SQL queries of one run: the forecast
(cohort_week_ahead: the pass at `now`, planned since the last minute's dispatch as beat's
would be, then each email due within the week ahead), and the
cohort's admin page through Django's full stack (test client, a superuser, DEBUG off), which
shows it. Sizes: BENCH_FORECAST_LEARNERS (default 20,000 and 100,000, comma-separated).

On PostgreSQL only (database bench_forecast_<pid> on BENCH_POSTGRES_URL's server; prints why
when it is skipped): production runs PostgreSQL. No target in an issue: the forecast was noted
as slow near 100,000 learners; this measures it (3.7 s for 100,000 while its week ahead was a
full plan, reading every learner once per email in the catch-up window; 2.1 s since).
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_on_throwaway_database, median_of_five, page_fetch, postgres_unavailable, print_results  # noqa: E402

SIZES = [int(size) for size in os.environ.get("BENCH_FORECAST_LEARNERS", "20000,100000").split(",")]
ZONES = ["America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
         "Africa/Nairobi", "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney"]


def load(cursor, cohort, course, learners: int, confirmed_at) -> None:
    """The round's groups, learners and enrollments, in three statements."""
    from cohorts.models import StudyGroup
    from signups.models import Enrollment, Learner

    groups = learners // 10
    params = {"cohort": cohort.pk, "course": course.pk, "at": confirmed_at, "zones": ZONES}
    cursor.execute(
        f"INSERT INTO {StudyGroup._meta.db_table} (cohort_id, number, name, slug, discussion_url, utc_offset_minutes, created_at, strategy)"
        f" SELECT %(cohort)s, n, 'Group ' || n, 'forecast-' || %(cohort)s || '-' || n, '', 0, %(at)s, 'timezone_experience'"
        f" FROM generate_series(1, {groups}) n", params)
    cursor.execute(
        f"INSERT INTO {Learner._meta.db_table} (email, public_id, first_name, timezone, experience, confirmed_at,"
        " unsubscribed_reason, created_at, updated_at)"
        f" SELECT 'f' || %(cohort)s || '-' || n || '@bench.invalid', gen_random_uuid(), 'L' || n,"
        " (%(zones)s::text[])[1 + n %% 10], 'some', %(at)s, '', %(at)s, %(at)s"
        f" FROM generate_series(1, {learners}) n", params)
    cursor.execute(
        f"INSERT INTO {Enrollment._meta.db_table} (learner_id, course_id, cohort_id, status, wants_group, group_id, grouped_at,"
        " group_moved_from, mailable_since, created_at, updated_at)"
        f" SELECT l.id, %(course)s, %(cohort)s, 'active', true, (SELECT min(id) FROM {StudyGroup._meta.db_table} WHERE cohort_id = %(cohort)s)"
        f" + l.id %% {groups}, %(at)s, '', %(at)s, %(at)s, %(at)s"
        f" FROM {Learner._meta.db_table} l WHERE l.email LIKE 'f' || %(cohort)s || '-%%'",
        params)


def measure(learners: int) -> list[tuple[str, str, str]]:
    import datetime

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from cohorts.models import Cohort, Course
    from scheduler.forecast import cohort_week_ahead
    from scheduler.models import Delivery
    from scheduler.planning import deliveries_dispatch

    now = timezone.now().replace(microsecond=0)
    today = now.date()
    start = today - datetime.timedelta(days=today.weekday(), weeks=2)  # a Monday: week 3 began this Monday
    course = Course.objects.create(title=f"Forecast {learners}", slug=f"forecast-{learners}", week_count=8)
    cohort = Cohort.objects.create(course=course, name=f"Round of {learners}", slug=f"round-{learners}", start_date=start,
                                   signup_opens_on=start - datetime.timedelta(weeks=4), signup_closes_on=start)
    confirmed_at = datetime.datetime.combine(start - datetime.timedelta(days=1), datetime.time(12), tzinfo=datetime.UTC)
    loading = time.perf_counter()
    with connection.cursor() as cursor:
        load(cursor, cohort, course, learners, confirmed_at)
    # The ledger as the real dispatch writes it: a pass just after each week's moments, each
    # week's rows then sent (as the workers would have), so the next pass finds them settled.
    for days in [1, 8, 15]:
        moment = datetime.datetime.combine(start + datetime.timedelta(days=days), datetime.time(12), tzinfo=datetime.UTC)
        if moment <= now:  # on a Monday morning, week 3 is due now instead
            deliveries_dispatch(moment)
        Delivery.objects.filter(cohort=cohort).exclude(status=Delivery.Status.SENT).update(status=Delivery.Status.SENT, sent_at=now)
    deliveries_dispatch(now)  # the pass of this minute: it keeps the cohort's planning mark fresh, as beat's every minute does
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    load_seconds = time.perf_counter() - loading
    rows = Delivery.objects.filter(cohort=cohort).count()

    user = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        "bench", "bench@bench.invalid", "bench-password")
    client = Client()
    client.force_login(user)
    ahead = cohort_week_ahead(cohort, now)
    later = sum(line.count for line in ahead["later"])
    due_now = sum(line.count for line in ahead["due_now"])
    return [
        (f"{learners:,} learners: load and dispatch ({rows:,} ledger rows)", f"{load_seconds:.0f}", "s"),
        (f"  forecast ({due_now:,} due now, {later:,} in the week ahead)", *median_of_five(lambda: cohort_week_ahead(cohort, now))),
        ("  the cohort's admin page", *median_of_five(page_fetch(client, reverse("admin:cohorts_cohort_change", args=[cohort.pk])))),
    ]


def main() -> None:
    if reason := postgres_unavailable():
        print(f"forecast: skipped, {reason}\n")
        return
    with django_on_throwaway_database("postgresql", name=f"bench_forecast_{os.getpid()}"):
        results = [row for learners in SIZES for row in measure(learners)]
    print_results("cohort forecast on postgresql: a running round in its third week, the page's week ahead", results)


if __name__ == "__main__":
    main()
