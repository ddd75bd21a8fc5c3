"""The organizer dashboard of a 100,000-learner round, 8 weeks, about 2 million tracking events.

One finished round of 100,000 learners in 10,000 groups: 2% unsubscribed or stopped by a
bounce or complaint, 3% left, 2% dropped back, spread over its weeks; a ledger of 1.1 million
rows (welcome, group introduction, 8 weeks, course end) with the first delivered, opened,
clicked and bounced moments a provider's events would have set (97% delivered, opens from 60%
in week 1 down to 32% in week 8, a tenth of openers clicking, 1% bounced), and the tracking
events themselves (delivered, opened, opened again, clicked; 1,000 orphaned): about 2 million
rows. Loaded with INSERT ... SELECT in the database, then VACUUM ANALYZEd as autovacuum would.

Timed, five times each (median and slowest), with the SQL queries of one run: the selector
(scheduler.dashboard.cohort_dashboard), the admin page through Django's full stack (test
client, a superuser, DEBUG off), the per-week CSV, and the learners CSV read to its end.

Target (issue 14): the round's dashboard under 1 s with a fixed number of queries, on
PostgreSQL (database bench_dash_<pid> on BENCH_POSTGRES_URL's server; prints why when it is
skipped). Not on SQLite: the load is written in PostgreSQL's SQL, and production runs PostgreSQL.
BENCH_SHOW_QUERIES=1 prints each run's slowest statements, BENCH_EXPLAIN=1 their plans.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_on_throwaway_database, median_of_five, page_fetch, postgres_unavailable, print_results  # noqa: E402

LEARNERS = 100_000
GROUPS = 10_000
WEEKS = 8
ZONES = ["America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
         "Africa/Nairobi", "Asia/Kolkata", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney"]


def load(cursor, cohort, course, start, now) -> None:
    """The round's learners, groups, ledger and events, in a handful of statements."""
    from cohorts.models import StudyGroup
    from scheduler.models import Delivery, TrackingEvent
    from signups.models import Enrollment, Learner

    week_zero = f"TIMESTAMPTZ '{start.isoformat()} 00:00+00'"
    params = {"cohort": cohort.pk, "course": course.pk, "now": now}
    cursor.execute("SELECT setseed(0.14)")
    cursor.execute(
        f"INSERT INTO {StudyGroup._meta.db_table} (cohort_id, number, name, slug, discussion_url, utc_offset_minutes, created_at, strategy)"
        " SELECT %(cohort)s, n, 'Group ' || n, 'bench-' || n, '', 0, %(now)s, 'timezone_experience' FROM generate_series(1, " f"{GROUPS}) n", params)
    # Learner n: stopped (unsubscribed 2%: every 50th), left (3%), dropped back (2%), each in a week of its own.
    cursor.execute(
        f"INSERT INTO {Learner._meta.db_table} (email, public_id, first_name, timezone, experience, confirmed_at,"
        " unsubscribed_at, unsubscribed_reason, created_at, updated_at)"
        " SELECT 'l' || n || '@bench.invalid', gen_random_uuid(), 'L' || n, (%(zones)s::text[])[1 + n %% 10], 'some',"
        f" {week_zero} - interval '10 days',"
        f" CASE WHEN n %% 50 = 0 THEN {week_zero} + (n %% 63) * interval '1 day' + interval '13 hours' END,"
        " CASE WHEN n %% 50 = 0 THEN (ARRAY['unsubscribed', 'unsubscribed', 'bounced', 'complained', 'soft_bounced'])[1 + n / 50 %% 5] ELSE '' END,"
        f" {week_zero} - interval '20 days', %(now)s"
        f" FROM generate_series(1, {LEARNERS}) n",
        {**params, "zones": ZONES})
    cursor.execute(
        f"INSERT INTO {Enrollment._meta.db_table} (learner_id, course_id, cohort_id, status, wants_group, group_id, grouped_at,"
        " group_moved_from, mailable_since, created_at, updated_at, ended_at)"
        " SELECT l.id, %(course)s, %(cohort)s,"
        "  CASE WHEN l.unsubscribed_reason IN ('unsubscribed', 'complained') OR l.id %% 33 = 1 THEN 'left'"
        "       WHEN l.id %% 50 = 7 THEN 'switched' ELSE 'active' END,"
        f" true, (SELECT min(id) FROM {StudyGroup._meta.db_table}) + l.id %% {GROUPS}, {week_zero} - interval '1 day', '',"
        f" {week_zero} - interval '10 days', {week_zero} - interval '20 days', %(now)s,"
        "  CASE WHEN l.unsubscribed_reason IN ('unsubscribed', 'complained') THEN l.unsubscribed_at"
        f"      WHEN l.id %% 33 = 1 OR l.id %% 50 = 7 THEN {week_zero} + (l.id %% 60) * interval '1 day' + interval '8 hours' END"
        f" FROM {Learner._meta.db_table} l",
        params)
    # The ledger: every email went out; the provider's first moments, as its events set them.
    cursor.execute(
        f"INSERT INTO {Delivery._meta.db_table} (learner_id, cohort_id, kind, week_number, status, due_at, attempts, sent_at,"
        " provider_message_id, reason_code, reason, created_at, updated_at, delivered_at, opened_at, clicked_at, bounced_at)"
        " SELECT learner_id, %(cohort)s, kind, week, 'sent', due, 1, due, 'msg-' || learner_id || '-' || kind || week, '', '', due, due,"
        "  CASE WHEN r < 0.97 THEN due + interval '2 minutes' END,"
        "  CASE WHEN r < 0.97 AND random() < 0.6 - 0.04 * week THEN due + interval '3 hours' END,"
        "  NULL, CASE WHEN r >= 0.99 THEN due + interval '1 minute' END"
        " FROM (SELECT l.id AS learner_id, e.kind, e.week, random() AS r,"
        f"        {week_zero} + greatest(e.week - 1, 0) * interval '7 days' + interval '9 hours' AS due"
        f"       FROM {Learner._meta.db_table} l CROSS JOIN (VALUES ('welcome', 0), ('group_intro', 0), ('week', 1), ('week', 2),"
        "        ('week', 3), ('week', 4), ('week', 5), ('week', 6), ('week', 7), ('week', 8), ('course_end', 0)) AS e(kind, week)) d",
        params)
    cursor.execute(f"UPDATE {Delivery._meta.db_table} SET clicked_at = opened_at + interval '1 minute' WHERE opened_at IS NOT NULL AND random() < 0.1")
    columns = "(esp, event_key, event_type, refusal, occurred_at, received_at, message_id, recipient_digest, delivery_id, learner_id, detail, applied_at, recipient)"
    # Short keys in the ledger's order: the unique index on them is filled from one end, as by time.
    for key, event_type, moment, condition in [
        ("d", "delivered", "delivered_at", "delivered_at IS NOT NULL"),
        ("o", "opened", "opened_at", "opened_at IS NOT NULL"),
        ("p", "opened", "opened_at + interval '1 day'", "opened_at IS NOT NULL AND id % 3 <> 0"),  # opened again
        ("c", "clicked", "clicked_at", "clicked_at IS NOT NULL"),
        ("b", "bounced", "bounced_at", "bounced_at IS NOT NULL"),
    ]:
        cursor.execute(
            f"INSERT INTO {TrackingEvent._meta.db_table} {columns}"
            f" SELECT 'postmark', '{key}' || id, '{event_type}', '', {moment}, {moment},"
            f" provider_message_id, '', id, learner_id, '', {moment}, '' FROM {Delivery._meta.db_table} WHERE {condition}")
    cursor.execute(
        f"INSERT INTO {TrackingEvent._meta.db_table} {columns}"
        " SELECT 'postmark', 'orphan-' || n, 'delivered', '', %(now)s - n * interval '1 hour', %(now)s - n * interval '1 hour',"
        " 'unknown-' || n, '', NULL, NULL, '', %(now)s, '' FROM generate_series(1, 1000) n", params)
    cursor.execute("VACUUM ANALYZE")


def main() -> None:
    if reason := postgres_unavailable():
        print(f"dashboard: skipped, {reason}\n")
        return
    with django_on_throwaway_database("postgresql", name=f"bench_dash_{os.getpid()}"):
        import datetime

        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client
        from django.urls import reverse
        from django.utils import timezone

        from cohorts.models import Cohort, Course
        from scheduler.dashboard import cohort_dashboard
        from scheduler.models import Delivery, TrackingEvent

        now = timezone.now()
        start = now.date() - datetime.timedelta(weeks=WEEKS, days=2)
        course = Course.objects.create(title="Bench course", slug="bench", week_count=WEEKS)
        cohort = Cohort.objects.create(course=course, name="Bench round", slug="bench-round", start_date=start,
                                       signup_opens_on=start - datetime.timedelta(weeks=4), signup_closes_on=start)
        loading = time.perf_counter()
        with connection.cursor() as cursor:
            load(cursor, cohort, course, start, now)
        load_seconds = time.perf_counter() - loading
        deliveries, events = Delivery.objects.count(), TrackingEvent.objects.count()
        get_user_model().objects.create_superuser("bench", "bench@bench.invalid", "bench-password")
        client = Client()
        client.force_login(get_user_model().objects.get(username="bench"))


        board = cohort_dashboard(cohort, timezone.now())
        results = [
            ("load (SQL)", f"{load_seconds:.0f}", "s"),
            ("selector", *median_of_five(lambda: cohort_dashboard(cohort, timezone.now()))),
            ("admin page", *median_of_five(page_fetch(client, reverse("admin:cohorts_cohort_dashboard", args=[cohort.pk])))),
            ("per-week CSV", *median_of_five(page_fetch(client, reverse("admin:cohorts_cohort_dashboard_csv", args=[cohort.pk, "weeks"])))),
            ("learners CSV", *median_of_five(page_fetch(client, reverse("admin:cohorts_cohort_dashboard_csv", args=[cohort.pk, "learners"])))),
            ("course page", *median_of_five(page_fetch(client, reverse("admin:cohorts_course_dashboard", args=[course.pk])))),
        ]
        steps = {step.key: step.count for step in board.funnel}
        summary = (f"week 1 delivered {steps['week_1_delivered']:,}, opened {steps['week_1_opened']:,}; "
                   f"week 8 opened {steps['week_8_opened']:,}; {len(board.quiet_groups)} quiet groups")
    print_results(
        f"dashboard on postgresql: a round of {LEARNERS:,} learners, {deliveries:,} ledger rows, {events:,} tracking events\n  ({summary})",
        results)


if __name__ == "__main__":
    main()
