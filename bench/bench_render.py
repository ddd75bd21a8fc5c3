"""Rendering the weekly email: complete emails per second for 10,000 learners with groups.

One template version (the demo course's week 1, as `load_demo` installs it) is rendered for
10,000 confirmed learners in study groups, through the service the scheduler uses: each
learner's context (their name, group and its members, signed links) and `email_render`
(subject, text, HTML in the shared layout, headers). The learners, their groups and the
members are loaded first, in a fixed number of queries, as the scheduler loads a chunk.

Baseline, in the same run: a bare render of the same compiled templates with the course and
week data only (no learner, group or links). The overhead ratio is our time over the bare
time; the target is at least 2,000 emails per second on one core and under 3x the bare render.
"""

import io
import time

from _common import django_on_throwaway_database, print_results

LEARNERS = 10_000


def main() -> None:
    with django_on_throwaway_database():
        # Imported only now: Django must not read its settings before the environment is set.
        import random

        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from cohorts.models import Cohort
        from cohorts.selectors import course_week
        from scheduler.models import EmailKind
        from scheduler.selectors import email_contexts, email_template_for, week_context
        from scheduler.services import delivery_header, email_render
        from scheduler.templating import email_compile, email_render_parts
        from signups.groups import cohort_groups_form
        from signups.models import Enrollment, Learner

        call_command("load_demo", stdout=io.StringIO())
        cohort = Cohort.objects.select_related("course").get(slug="gentle-python-round-2")
        rng = random.Random(1)
        zones = ["America/New_York", "America/Chicago", "Europe/London", "Europe/Berlin", "Asia/Kolkata", "Asia/Tokyo"]
        names = ["Ada", "Grace", "Alan", "Katherine", "Hedy", "Linus", "Margaret", "Edsger", "Barbara", ""]
        now = timezone.now()
        learners = Learner.objects.bulk_create(
            [Learner(email=f"l{n}@bench.invalid", first_name=rng.choice(names), timezone=rng.choice(zones),
                     experience=rng.choice(["none", "some", "experienced"]), confirmed_at=now) for n in range(LEARNERS)],
            batch_size=5000,
        )
        Enrollment.objects.bulk_create(
            [Enrollment(learner=learner, course=cohort.course, cohort=cohort, status="active") for learner in learners],
            batch_size=5000,
        )
        cohort_groups_form(cohort, now=now)

        with CaptureQueriesContext(connection) as queries:
            version = email_template_for(cohort, EmailKind.WEEK, 1).current_version
            week = week_context(course_week(cohort.course, 1), cohort.week_count)
            enrollments = list(Enrollment.objects.filter(cohort=cohort).select_related("learner", "group"))
            started = time.perf_counter()
            contexts = email_contexts(cohort, week, enrollments, cohort.start_date)
            context_seconds = time.perf_counter() - started
        render_started = time.perf_counter()
        emails = [
            email_render(version, contexts[enrollment.pk], delivery_header(EmailKind.WEEK, cohort.slug, 1, enrollment.pk))
            for enrollment in enrollments
        ]
        render_seconds = time.perf_counter() - render_started
        ours = context_seconds + render_seconds

        compiled = email_compile(version)
        bare_context = {"course": contexts[enrollments[0].pk]["course"], "cohort": None, "week": week, "learner": {}, "group": None, "links": {}, "checkin": {"last": None}}
        started = time.perf_counter()
        for _ in range(LEARNERS):
            email_render_parts(compiled, bare_context)
        bare = time.perf_counter() - started
        sizes = [len(email.html) + len(email.text) for email in emails]

    print_results(
        f"weekly email rendering: {LEARNERS:,} learners in groups, one template version",
        [
            ("complete emails", f"{LEARNERS / ours:,.0f}", "per second (context, subject, text, HTML, headers)"),
            ("per email", f"{ours / LEARNERS * 1e6:.0f}", f"µs ({context_seconds / LEARNERS * 1e6:.0f} building the context, {render_seconds / LEARNERS * 1e6:.0f} rendering)"),
            ("bare render", f"{LEARNERS / bare:,.0f}", "per second (same templates, no learner data)"),
            ("overhead ratio", f"{ours / bare:.2f}", "x the bare render (target: under 3x)"),
            ("SQL queries", str(len(queries)), f"to load {LEARNERS:,} learners, their groups and members"),
            ("email size", f"{sum(sizes) / len(sizes) / 1024:.1f}", "KiB on average (text + HTML)"),
        ],
    )


if __name__ == "__main__":
    main()
