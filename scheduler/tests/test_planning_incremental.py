"""Dispatch plans what changed since its last pass (time zones whose moment came, learners who
joined or were grouped), and everything again every DISPATCH_FULL_PASS_MINUTES."""

import datetime

import pytest

from cohorts.models import Cohort
from scheduler.models import CohortPlanning, Delivery, EmailKind
from scheduler.planning import deliveries_dispatch
from scheduler.tests.helpers import BEFORE_START, START, at, learner_in, run_pass, weekly
from signups.models import Enrollment
from signups.services import enrollment_resume

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]

MINUTE = datetime.timedelta(minutes=1)
LONG_AGO = BEFORE_START - datetime.timedelta(weeks=2)  # confirmed then: no welcome in the way


def test_a_time_zones_moment_coming_between_passes_is_planned_by_the_next_pass(cohort):
    lisbon = learner_in(cohort, "Europe/Lisbon", learner__confirmed_at=LONG_AGO, mailable_since=LONG_AGO)
    new_york = learner_in(cohort, "America/New_York", learner__confirmed_at=LONG_AGO, mailable_since=LONG_AGO)
    run_pass(at(START, 8, 50))  # a full pass: nothing due yet
    assert CohortPlanning.objects.get(cohort=cohort).timezones == ["America/New_York", "Europe/Lisbon"]

    run_pass(at(START, 9, 1))  # Lisbon's 09:00 came
    assert list(weekly(cohort, 1).values_list("learner_id", "status")) == [(lisbon.learner_id, "sent")]

    for minute in range(2, 15):
        run_pass(at(START, 9, minute))
    run_pass(at(START, 14, 1))  # New York's 09:00
    assert set(weekly(cohort, 1).values_list("learner_id", "status")) == {(lisbon.learner_id, "sent"), (new_york.learner_id, "sent")}


def test_a_learner_who_resumes_between_passes_is_planned_at_once(cohort):
    enrollment = learner_in(cohort, "Asia/Kathmandu", learner__confirmed_at=LONG_AGO, mailable_since=LONG_AGO,
                            status=Enrollment.Status.PAUSED)
    run_pass(at(START, 10))
    resumed = at(START, 10, 7)
    enrollment_resume(enrollment, now=resumed)

    report = run_pass(resumed + MINUTE)

    # Paused since before the round: this is also their first welcome.
    assert {kind for _, kind, _, _ in report.planned} == {EmailKind.WEEK, EmailKind.WELCOME}
    assert (weekly(cohort, 1).get().status, weekly(cohort, 1).get().due_at) == ("sent", resumed)
    assert "Asia/Kathmandu" in CohortPlanning.objects.get(cohort=cohort).timezones  # its moments are watched from now on


def test_an_idle_pass_costs_the_same_queries_whatever_the_cohorts_size(cohort, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def idle_pass_queries(learners: int, minute: int) -> int:
        for _ in range(learners):
            learner_in(cohort, "Europe/Lisbon", learner__confirmed_at=LONG_AGO, mailable_since=LONG_AGO)
        run_pass(at(START, 9, minute))  # plans and sends what is due
        with CaptureQueriesContext(connection) as queries:
            report = deliveries_dispatch(at(START, 9, minute + 1))
        assert not report.planned and not report.chunks
        return len(queries)

    assert idle_pass_queries(5, 10) == idle_pass_queries(40, 12)


def test_a_change_behind_the_services_back_is_planned_by_the_next_full_pass(cohort, settings):
    settings.DISPATCH_FULL_PASS_MINUTES = 30
    run_pass(at(START, 9, 30))
    # An enrollment written by hand (the admin, a shell): nothing says when it became mailable.
    stray = learner_in(cohort, "Europe/Lisbon", learner__confirmed_at=LONG_AGO, mailable_since=None)

    run_pass(at(START, 9, 31))
    assert not weekly(cohort, 1).exists()  # the incremental pass cannot see it

    run_pass(at(START, 10, 0))  # 30 minutes after the last full pass
    assert weekly(cohort, 1).get().learner_id == stray.learner_id


def test_an_organizer_moving_the_send_time_earlier_is_planned_at_once(cohort):
    enrollment = learner_in(cohort, "Europe/Lisbon", learner__confirmed_at=LONG_AGO, mailable_since=LONG_AGO)
    run_pass(at(START, 8, 0))
    Cohort.objects.filter(pk=cohort.pk).update(send_time=datetime.time(7, 0))  # its moment is now in the past

    run_pass(at(START, 8, 1))

    row = weekly(cohort, 1).get()
    assert (row.learner_id, row.status, row.due_at) == (enrollment.learner_id, "sent", at(START, 7))


def test_a_dry_run_moves_no_mark(cohort):
    learner_in(cohort, "Europe/Lisbon", learner__confirmed_at=LONG_AGO, mailable_since=LONG_AGO)
    deliveries_dispatch(at(START, 9, 1), dry_run=True)
    assert not CohortPlanning.objects.exists() and not Delivery.objects.filter(kind=EmailKind.WEEK).exists()


@pytest.mark.parametrize("now", [at(START, 10), at(START + datetime.timedelta(days=3), 18), at(START + datetime.timedelta(weeks=7, days=6), 23)],
                         ids=["week 1, Monday", "week 1, Thursday", "the last week, Sunday night"])
def test_the_week_ahead_is_what_a_full_plan_at_its_end_finds_due_after_now(cohort, now):
    """The forecast's week ahead reads only the time zones whose moment comes in it
    (planning.cohort_rows_due_between); a full plan at the window's end, which reads every
    learner, finds the same rows due after now."""
    from scheduler.planning import _planned_rows, cohort_rows_due_between

    zones = ["Pacific/Honolulu", "America/New_York", "Europe/Lisbon", "Asia/Kathmandu", "Asia/Tokyo", "Pacific/Kiritimati"]
    for zone in zones:
        learner_in(cohort, zone, learner__confirmed_at=LONG_AGO, mailable_since=LONG_AGO)
    learner_in(cohort, "Europe/Berlin", learner__confirmed_at=now - datetime.timedelta(hours=2))  # just joined
    learner_in(cohort, "Asia/Tokyo", learner__confirmed_at=LONG_AGO, mailable_since=LONG_AGO, status=Enrollment.Status.PAUSED)
    run_pass(now)  # the ledger as of now: what is due is in it
    until = now + datetime.timedelta(days=7)

    week_ahead = {row for row in cohort_rows_due_between(cohort, now, until) if row.due_at > now}
    full_plan = {row for row in _planned_rows(cohort, until) if row.due_at > now}

    assert week_ahead == full_plan
    assert len(week_ahead) >= len(zones)  # every zone has an email in the week ahead


def test_the_learners_with_a_row_are_found_among_those_asked_about(cohort):
    """What each incremental pass leaves out as planned already (on PostgreSQL, one array parameter)."""
    from scheduler.planning import _learners_with_row

    ana, ben, cai = (learner_in(cohort, email=f"{name}@example.org").learner_id for name in ("ana", "ben", "cai"))
    for learner_id, week_number in [(ana, 1), (ben, 1), (cai, 2)]:
        Delivery.objects.create(learner_id=learner_id, cohort=cohort, kind=EmailKind.WEEK, week_number=week_number,
                                due_at=at(START, 9), created_at=at(START, 9))

    assert _learners_with_row(cohort, EmailKind.WEEK, 1, among=[ben, cai]) == {ben}
    assert _learners_with_row(cohort, EmailKind.WEEK, 1, among=[]) == set()
    assert _learners_with_row(cohort, EmailKind.WEEK, 1) == {ana, ben}
    assert _learners_with_row(cohort, EmailKind.WELCOME, 0, among=[ana, ben, cai]) == set()
