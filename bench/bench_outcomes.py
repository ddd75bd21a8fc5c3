"""The outcome report of a 100,000-learner round, 8 weeks (issue 16).

bench_dashboard's round (100,000 learners in 10,000 groups, a ledger of 1.1 million rows with the
provider's opens, about 2 million tracking events), made an experiment: half its groups formed
by time zone and experience, half at random. Then the learners' weekly check-ins, as many as a
round might bring: from 45% of learners in week 1 down to 20% in week 8 (done mostly, some
behind or stuck), about 260,000 rows. Loaded in SQL, VACUUM ANALYZEd.

Timed, five times each (median and slowest), with the queries of one run: the selector
(scheduler.outcomes.cohort_outcomes), the admin page and its CSV through Django's full stack,
the course's page; and, for the weekly check-in rate per group on the cohort's page and the
offers of re-forming by activity, their selectors (signups.group_checkins).

Target (issue 16): the outcome report for 100,000 learners and 8 weeks under 1 s, a fixed
number of queries, on PostgreSQL (database mooc_outcomes_bench_<pid> on BENCH_POSTGRES_URL's
server; prints why when it is skipped).
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_on_throwaway_database, median_of_five, page_fetch, postgres_unavailable, print_results  # noqa: E402
from bench_dashboard import LEARNERS, WEEKS, load as load_round  # noqa: E402


def load_checkins(cursor, cohort, start) -> None:
    """Half the groups at random (the experiment's second arm), and the learners' check-ins."""
    from cohorts.models import StudyGroup
    from signups.models import CheckIn, Enrollment

    week_zero = f"TIMESTAMPTZ '{start.isoformat()} 00:00+00'"
    cursor.execute(f"UPDATE {StudyGroup._meta.db_table} SET strategy = CASE WHEN number %% 2 = 0 THEN 'random' ELSE 'timezone_experience' END"
                   " WHERE cohort_id = %s", [cohort.pk])
    cursor.execute("SELECT setseed(0.16)")
    # Learners in the random arm check in a little less: the report has a difference to find.
    cursor.execute(
        f"INSERT INTO {CheckIn._meta.db_table} (learner_id, cohort_id, week_number, answer, answered_at, changed_at, group_told_at)"
        " SELECT e.learner_id, %s, w, (ARRAY['done', 'done', 'done', 'done', 'done', 'done', 'done', 'done', 'behind', 'stuck'])[1 + floor(random() * 10)::int],"
        f"  {week_zero} + (w - 1) * interval '7 days' + interval '2 days', {week_zero} + (w - 1) * interval '7 days' + interval '2 days', NULL"
        f" FROM {Enrollment._meta.db_table} e JOIN {StudyGroup._meta.db_table} g ON g.id = e.group_id CROSS JOIN generate_series(1, {WEEKS}) w"
        # A draw for each learner and week: naming e's column keeps PostgreSQL from drawing once
        # per group and week, below the join (it pushes the condition down, volatile or not).
        " WHERE e.cohort_id = %s AND random() + 0 * e.learner_id < 0.45 - 0.035 * (w - 1) - CASE WHEN g.strategy = 'random' THEN 0.02 ELSE 0 END",
        [cohort.pk, cohort.pk])
    cursor.execute("VACUUM ANALYZE")


def main() -> None:
    if reason := postgres_unavailable():
        print(f"outcomes: skipped, {reason}\n")
        return
    with django_on_throwaway_database("postgresql", name=f"mooc_outcomes_bench_{os.getpid()}"):
        import datetime

        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client
        from django.urls import reverse
        from django.utils import timezone

        from cohorts.models import Cohort, Course
        from scheduler.outcomes import cohort_outcomes
        from signups.group_checkins import group_move_offers_due, groups_checkins
        from signups.models import CheckIn

        now = timezone.now()
        start = now.date() - datetime.timedelta(weeks=WEEKS, days=2)
        course = Course.objects.create(title="Bench course", slug="bench", week_count=WEEKS)
        cohort = Cohort.objects.create(course=course, name="Bench round", slug="bench-round", start_date=start,
                                       signup_opens_on=start - datetime.timedelta(weeks=4), signup_closes_on=start,
                                       group_strategy="experiment", experiment_strategies=["timezone_experience", "random"])
        loading = time.perf_counter()
        with connection.cursor() as cursor:
            load_round(cursor, cohort, course, start, now)
            load_checkins(cursor, cohort, start)
        load_seconds = time.perf_counter() - loading
        checkins = CheckIn.objects.count()
        get_user_model().objects.create_superuser("bench", "bench@bench.invalid", "bench-password")
        client = Client()
        client.force_login(get_user_model().objects.get(username="bench"))
        today = timezone.localdate()
        # The cohort's page and the offers judge the last two weeks of a running round: week 8's Wednesday.
        in_week_8 = start + datetime.timedelta(weeks=WEEKS - 1, days=2)
        reforming = Cohort.objects.get(pk=cohort.pk)
        reforming.reform_by_activity = True


        report = cohort_outcomes(cohort, today).report
        results = [
            ("load (SQL)", f"{load_seconds:.0f}", "s"),
            ("selector", *median_of_five(lambda: cohort_outcomes(cohort, today))),
            ("admin page", *median_of_five(page_fetch(client, reverse("admin:cohorts_cohort_outcomes", args=[cohort.pk])))),
            ("CSV", *median_of_five(page_fetch(client, reverse("admin:cohorts_cohort_outcomes_csv", args=[cohort.pk])))),
            ("course page", *median_of_five(page_fetch(client, reverse("admin:cohorts_course_outcomes", args=[course.pk])))),
            ("group rates (cohort page)", *median_of_five(lambda: groups_checkins(cohort, in_week_8))),
            ("move offers due", *median_of_five(lambda: group_move_offers_due(reforming, in_week_8))),
        ]
        _, groups = groups_checkins(cohort, in_week_8)
        offers = len(group_move_offers_due(reforming, in_week_8))
        shares = "; ".join(
            f"{row.label}: " + ", ".join(f"{key} {row.figures[key].percent}" for key, _ in report.milestones if row.figures[key])
            for row in report.rows
        )
        summary = f"{shares}\n  {report.verdicts[-1].sentence}\n  {sum(g.quiet for g in groups):,} of {len(groups):,} groups quiet in week 8, {offers:,} move offers due"
    print_results(
        f"outcome report on postgresql: a round of {LEARNERS:,} learners, {WEEKS} weeks, {checkins:,} check-ins\n  {summary}",
        results)


if __name__ == "__main__":
    main()
