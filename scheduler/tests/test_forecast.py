"""The forecast, `send_due --dry-run` and the pass that follows agree on every row: sent,
skipped (and why), or waiting for a template."""

import datetime
from io import StringIO

import pytest
from django.core.management import call_command

from scheduler.forecast import SEND, SKIP, WAIT, deliveries_forecast, forecast_lines
from scheduler.ledger import Reason
from scheduler.models import Delivery, EmailKind, EmailTemplate
from signups.models import Enrollment

from scheduler.tests.helpers import BEFORE_START, START, at, learner_in, run_pass

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]

NOW = at(START, 10)  # Monday of week 1, 10:00 UTC: Lisbon's week 1 fell due at 09:00


def _ledger():
    return {row.pk: row for row in Delivery.objects.all()}


def _outcome(row: Delivery) -> tuple[str, str]:
    if row.status == Delivery.Status.SENT:
        return SEND, row.reason_code
    if row.status == Delivery.Status.SKIPPED:
        return SKIP, row.reason_code
    assert row.status == Delivery.Status.PENDING and row.reason_code == Reason.WAITING_FOR_TEMPLATE, row
    return WAIT, row.reason_code


@pytest.fixture
def round_with_every_outcome(cohort):
    """One learner per way a row can go at NOW."""
    names = {}
    names["on_time"] = learner_in(cohort, email="ana@example.org")
    learner_in(cohort, "America/New_York", email="ben@example.org")  # week 1 due at 14:00 UTC: later
    names["late_welcome"] = learner_in(cohort, email="cai@example.org", learner__confirmed_at=NOW - datetime.timedelta(days=3, hours=12))
    paused = learner_in(cohort, email="dee@example.org")
    Delivery.objects.create(learner=paused.learner, cohort=cohort, kind=EmailKind.WEEK, week_number=1, due_at=at(START, 9), created_at=at(START, 9))
    Enrollment.objects.filter(pk=paused.pk).update(status=Enrollment.Status.PAUSED)
    old = learner_in(cohort, email="eve@example.org")
    Delivery.objects.create(learner=old.learner, cohort=cohort, kind=EmailKind.WELCOME, week_number=0,
                            due_at=NOW - datetime.timedelta(days=5), created_at=NOW - datetime.timedelta(days=5))
    learner_in(cohort, email="fay@example.org", learner__confirmed_at=NOW - datetime.timedelta(minutes=10))
    EmailTemplate.objects.filter(kind=EmailKind.WELCOME).delete()  # fay's welcome waits for one
    return cohort


def test_the_forecast_the_dry_run_and_the_pass_agree_on_every_row(round_with_every_outcome):
    forecast = deliveries_forecast(NOW)
    before = _ledger()
    dry_run = StringIO()
    call_command("send_due", "--now", NOW.isoformat(), "--dry-run", stdout=dry_run)
    assert _ledger().keys() == before.keys()  # the dry run changed nothing

    run_pass(NOW)

    after = _ledger()
    touched = {
        (row.learner.email, row.kind, row.week_number): _outcome(row)
        for pk, row in after.items()
        if pk not in before or (before[pk].status, before[pk].reason_code) != (row.status, row.reason_code)
    }
    emails = dict(Delivery.objects.values_list("learner_id", "learner__email"))
    forecast_by_row = {(emails[row.learner_id], row.kind, row.week_number): (row.outcome, row.reason_code) for row in forecast}
    assert forecast_by_row == touched
    assert touched == {
        ("ana@example.org", "week", 1): (SEND, ""),
        ("cai@example.org", "welcome", 0): (SKIP, Reason.TOO_LATE),
        ("cai@example.org", "week", 1): (SEND, ""),
        ("dee@example.org", "week", 1): (SKIP, Reason.NOT_MAILABLE),
        ("eve@example.org", "welcome", 0): (SKIP, Reason.TOO_LATE),
        ("eve@example.org", "week", 1): (SEND, ""),
        ("fay@example.org", "welcome", 0): (WAIT, Reason.WAITING_FOR_TEMPLATE),
        ("fay@example.org", "week", 1): (SEND, ""),
    }
    assert dry_run.getvalue().splitlines() == [
        "Would send: winter week 1: 4",
        "Would skip: winter week 1: 1 (the learner paused their emails)",
        "Would skip: winter welcome: 2 (due more than 3 days, 0:00:00 ago while nothing was sending: skipped rather than sent late)",
        "Would wait: winter welcome: 1 (no email template for this email yet: waits for one)",
        "Would send 4, skip 3, wait 1 (for a template).",
    ]


def test_the_real_pass_counts_every_row_it_skipped(round_with_every_outcome, caplog):
    output = StringIO()
    call_command("send_due", "--now", NOW.isoformat(), stdout=output)

    assert output.getvalue().splitlines()[-1] == "4 sent, 0 failed, 3 skipped, 0 retrying, 1 waiting."
    assert "Overdue" not in caplog.text  # what this pass sent is not overdue


def test_the_week_ahead_adds_each_email_at_its_own_moment(round_with_every_outcome):
    rows = deliveries_forecast(NOW, until=NOW + datetime.timedelta(days=7))

    later = [(line.email, line.outcome, line.count, line.first_due, line.last_due) for line in forecast_lines(row for row in rows if row.due_at > NOW)]
    assert later == [
        ("week 1", SEND, 1, at(START, 14), at(START, 14)),  # New York's morning
        ("week 2", SEND, 4, at(START + datetime.timedelta(weeks=1), 9), at(START + datetime.timedelta(weeks=1), 9)),
    ]



def test_the_cohort_page_shows_the_week_ahead_in_utc_and_the_browsers_zone(round_with_every_outcome, admin_client, clock):
    clock.move_to(NOW)
    from django.urls import reverse

    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[round_with_every_outcome.pk])).content.decode()

    forecast = page[page.index('id="forecast"'):]
    forecast = forecast[: forecast.index("</fieldset>")]
    assert "Due in the next 7 days" in forecast
    assert "Skip: the learner paused their emails" in forecast
    assert "Wait: no email template for this email yet" in forecast
    assert "Mon 30 Nov 14:00" in forecast and "When (UTC)" in forecast  # New York's week 1
    assert 'datetime="2026-12-07T09:00:00+00:00"' in forecast  # week 2, turned into the browser's zone by script


def test_a_paused_cohort_forecasts_nothing(round_with_every_outcome, admin_client, clock):
    clock.move_to(NOW)
    from django.urls import reverse

    round_with_every_outcome.sending_paused = True
    round_with_every_outcome.save()
    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[round_with_every_outcome.pk])).content.decode()

    assert "Sending is paused: nothing goes out until it is resumed, so nothing is forecast." in page


def test_the_forecast_costs_the_same_queries_for_3_learners_as_for_30(cohort):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            deliveries_forecast(NOW, until=NOW + datetime.timedelta(days=7), cohorts=[cohort])
        return len(captured)

    # Per email (its ledger rows, its template), never per learner.
    for zone in ["America/New_York", "Asia/Tokyo", "Europe/Lisbon"]:
        learner_in(cohort, zone)
    few = queries()
    for zone in ["America/New_York", "Asia/Tokyo", "Europe/Lisbon"] * 9:
        learner_in(cohort, zone)
    assert queries() == few
