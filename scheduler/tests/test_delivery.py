"""The scheduler: what is due, the ledger, sending exactly once, failures, catch-up, DST, leavers."""

import datetime
import logging
import uuid
import zoneinfo
from io import StringIO

import pytest
from anymail.exceptions import AnymailRecipientsRefused
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.core.management import call_command

from cohorts.models import Cohort
from cohorts.services import cohort_sending_pause
from scheduler import ledger, sandbox, sending
from scheduler.ledger import AMBIGUOUS_DETAIL, rows_reclaim
from scheduler.planning import deliveries_dispatch, deliveries_overdue, deliveries_resend_failed, deliveries_send_week_now, queue_again_after
from scheduler.sending import deliveries_send
from scheduler.due import cohort_week_due
from scheduler.models import Delivery, EmailKind, EmailTemplate
from scheduler.services import template_version_save
from signups.models import Learner, Suppression
from signups.services import enrollment_leave, enrollment_pause, enrollment_switch_cohort, learner_erase, learner_unsubscribe

from scheduler.tests.helpers import BEFORE_START, START, at, learner_in, provider_error, run_pass, weekly

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]

# --- When ------------------------------------------------------------------------------------------


def test_week_one_is_due_at_nine_in_each_learners_own_morning(cohort):
    assert cohort_week_due(cohort, 1, "Europe/Lisbon") == at(START, 9)
    assert cohort_week_due(cohort, 1, "America/New_York") == at(START, 14)
    assert cohort_week_due(cohort, 1, "Australia/Sydney") == at(START - datetime.timedelta(days=1), 22)
    assert cohort_week_due(cohort, 2, "Europe/Lisbon") == at(START + datetime.timedelta(weeks=1), 9)


def test_nothing_is_sent_before_its_moment_and_everything_once_after(cohort):
    lisbon = learner_in(cohort, "Europe/Lisbon")
    new_york = learner_in(cohort, "America/New_York")

    run_pass(at(START, 8, 59))
    assert not weekly(cohort, 1).exists()

    run_pass(at(START, 9, 0))
    assert list(weekly(cohort, 1).values_list("learner_id", "status")) == [(lisbon.learner_id, "sent")]

    run_pass(at(START, 14, 0))
    run_pass(at(START, 15, 0))
    assert weekly(cohort, 1).filter(status="sent").count() == 2
    assert sorted(message.to[0] for message in mail.outbox if "Week 1" in message.subject or "We begin" in message.subject) == sorted(
        [lisbon.learner.email, new_york.learner.email]
    )


@pytest.mark.clock("2027-03-01T12:00:00Z")  # signup time for the round below
def test_daylight_saving_changes_neither_skip_nor_double_a_week(course, provider):
    # End to end for one zone and one change; test_due.py covers every zone and the hours
    # that a change skips or repeats.
    timezone_name, start = "Europe/Berlin", datetime.date(2027, 3, 15)  # clocks go forward on 28 March 2027
    cohort = Cohort.objects.create(course=course, name="DST", slug="dst", start_date=start,
                                   signup_opens_on=start - datetime.timedelta(weeks=2), signup_closes_on=start)
    enrollment = learner_in(cohort, timezone_name)
    enrollment.learner.confirmed_at = at(start, 0) - datetime.timedelta(weeks=2)  # no welcome email in the way
    enrollment.learner.save()
    moment = at(start, 0) - datetime.timedelta(days=1)
    # A pass every four hours for four weeks around the change (till the Saturday of week 4).
    while moment < at(start, 0) + datetime.timedelta(weeks=4, days=-2):
        run_pass(moment)
        moment += datetime.timedelta(hours=4)

    rows = Delivery.objects.filter(cohort=cohort, kind=EmailKind.WEEK).order_by("week_number")
    assert [(row.week_number, row.status) for row in rows] == [(1, "sent"), (2, "sent"), (3, "sent"), (4, "sent")]
    zone = zoneinfo.ZoneInfo(timezone_name)
    for row in rows:
        local = row.due_at.astimezone(zone)
        assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)  # Monday 09:00 on the wall clock, every week
    offsets = {row.due_at.astimezone(zone).utcoffset() for row in rows}
    assert len(offsets) == 2  # the change did happen inside these weeks


# --- Exactly once ------------------------------------------------------------------------------------


def test_dispatching_twice_and_sending_a_chunk_twice_sends_once(cohort):
    learners = [learner_in(cohort) for _ in range(5)]
    now = at(START, 10)

    first, second = deliveries_dispatch(now), deliveries_dispatch(now)
    assert weekly(cohort, 1).count() == 5  # the ledger's unique constraint
    chunk = first.chunks[0]
    assert second.chunks == []  # queued already, not queued again
    deliveries_send(chunk, now=now)
    deliveries_send(chunk, now=now)

    assert weekly(cohort, 1).filter(status="sent").count() == 5
    week_one = [m for m in mail.outbox if m.extra_headers["X-Mooc-Delivery"].startswith("week;")]
    assert sorted(m.to[0] for m in week_one) == sorted(e.learner.email for e in learners)


def test_each_email_carries_its_ledger_row_for_tracking(cohort):
    enrollment = learner_in(cohort, email="ada@example.org")
    run_pass(at(START, 10))

    row = weekly(cohort, 1).get()
    [message] = [m for m in mail.outbox if m.extra_headers["X-Mooc-Delivery"].startswith("week;")]
    assert message.extra_headers["X-Mooc-Delivery"] == f"week; cohort=winter; week=1; id={row.pk}"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    params = message.anymail_test_params
    assert params["metadata"] == {"delivery": str(row.pk), "learner": str(enrollment.learner.public_id),
                                  "course": "gentle-python", "cohort": "winter", "kind": "week", "week": "1"}
    assert params["tags"] == ["gentle-python-week-1"]
    assert row.provider_message_id != ""


def test_welcome_and_group_introduction_go_through_the_ledger(cohort):
    from signups.groups import cohort_groups_form

    for _ in range(6):
        learner_in(cohort, learner__confirmed_at=at(START, 0) - datetime.timedelta(days=1))
    cohort_groups_form(cohort, now=at(START, 0) - datetime.timedelta(hours=12))

    run_pass(at(START, 1))

    kinds = set(Delivery.objects.filter(status="sent").values_list("kind", flat=True))
    assert kinds == {EmailKind.GROUP_INTRO, EmailKind.WELCOME}
    assert Delivery.objects.filter(kind=EmailKind.GROUP_INTRO, status="sent").count() == 6
    intro = next(m for m in mail.outbox if m.extra_headers["X-Mooc-Delivery"].startswith("group_intro"))
    assert "Meet your study group" in intro.subject


def test_the_welcome_goes_out_on_confirmation_weeks_before_the_start(cohort):
    confirmed = at(START, 0) - datetime.timedelta(days=14)
    learner_in(cohort, learner__confirmed_at=confirmed)

    run_pass(confirmed + datetime.timedelta(minutes=1))

    welcome = Delivery.objects.get(kind=EmailKind.WELCOME)
    assert welcome.status == "sent" and welcome.due_at == confirmed
    assert not weekly(cohort, 1).exists()


# --- Failures ----------------------------------------------------------------------------------------


def test_a_provider_503_is_retried_with_backoff_then_sent(cohort, provider):
    enrollment = learner_in(cohort, email="retry@example.org")
    provider["retry@example.org"] = [provider_error(503, "Service Unavailable"), None]

    run_pass(at(START, 10))
    row = weekly(cohort, 1).get()
    assert (row.status, row.attempts) == ("pending", 1)
    assert at(START, 10, 0) + datetime.timedelta(seconds=30) <= row.next_attempt_at <= at(START, 10, 1)
    assert "503" in row.reason or "Service Unavailable" in row.reason

    run_pass(row.next_attempt_at + datetime.timedelta(seconds=1))
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)
    assert enrollment.learner.email in [m.to[0] for m in mail.outbox]


def test_transient_errors_give_up_after_the_last_attempt(cohort, provider, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 2
    learner_in(cohort, email="down@example.org")
    provider["down@example.org"] = [provider_error(503, "Service Unavailable")] * 3

    run_pass(at(START, 10))
    run_pass(weekly(cohort, 1).get().next_attempt_at)

    row = weekly(cohort, 1).get()
    assert row.status == "failed" and row.reason.startswith("gave up after 2 attempts")


def test_a_refused_recipient_fails_the_row_and_suppresses_the_address(cohort, provider):
    enrollment = learner_in(cohort, email="nobody@invalid.example")
    provider["nobody@invalid.example"] = [AnymailRecipientsRefused("Invalid recipient")]

    run_pass(at(START, 10))

    row = weekly(cohort, 1).get()
    assert (row.status, row.reason_code) == ("failed", "refused") and "Invalid recipient" in row.reason
    learner = Learner.objects.get(pk=enrollment.learner_id)
    assert learner.is_unsubscribed
    assert Suppression.objects.get().reason == "refused"
    run_pass(at(START + datetime.timedelta(weeks=1), 10))
    assert not weekly(cohort, 2).exists()  # never mailed again


def test_a_sender_side_400_unsubscribes_nobody_pauses_the_cohort_and_after_resume_everyone_gets_it_once(cohort, provider, settings):
    settings.DELIVERY_CHUNK_SIZE = 500
    enrollments = [learner_in(cohort) for _ in range(500)]
    [chunk] = deliveries_dispatch(at(START, 10)).chunks
    first = Delivery.objects.filter(pk__in=chunk).order_by("due_at", "pk").select_related("learner").first()
    provider[first.learner.email] = [provider_error(400, "'from' parameter is not a valid address")]

    report = deliveries_send(chunk, now=at(START, 10))

    cohort.refresh_from_db()
    assert cohort.sending_paused and "'from' parameter is not a valid address" in cohort.sending_paused_reason
    assert (report.sent, report.failed, report.released) == (0, 0, 500)
    assert not Learner.objects.filter(unsubscribed_at__isnull=False).exists() and not Suppression.objects.exists()
    assert set(weekly(cohort, 1).values_list("status", "reason_code", "attempts")) == {("pending", "configuration", 0)}
    run_pass(at(START, 11))
    assert not mail.outbox  # paused: nothing goes out

    cohort_sending_pause(cohort, False)  # an organizer fixed the sender, then resumed
    run_pass(at(START, 11, 5))

    assert weekly(cohort, 1).filter(status="sent").count() == 500
    assert sorted(m.to[0] for m in mail.outbox) == sorted(e.learner.email for e in enrollments)
    cohort.refresh_from_db()
    assert (cohort.sending_paused, cohort.sending_paused_reason) == (False, "")


def test_a_template_that_fails_for_one_learner_fails_only_that_row(cohort, monkeypatch):
    broken = learner_in(cohort, learner__first_name="Broken")
    others = [learner_in(cohort, learner__first_name="Fine") for _ in range(3)]
    real_render = sending.email_render

    def render(version, context, header):
        if context["learner"]["first_name"] == "Broken":  # a render error only this learner's data causes
            raise ValueError("boom")
        return real_render(version, context, header)

    monkeypatch.setattr(sending, "email_render", render)

    run_pass(at(START, 10))

    row = weekly(cohort, 1).get(learner=broken.learner)
    assert row.status == "failed" and "boom" in row.reason
    assert weekly(cohort, 1).filter(learner__in=[e.learner for e in others], status="sent").count() == 3


def test_a_render_past_its_budget_fails_that_learners_row_and_the_chunk_sends_the_next(cohort, monkeypatch):
    template = EmailTemplate.objects.get(course=cohort.course, cohort=None, kind=EmailKind.WEEK, week_number=1)
    # Its cost grows with the square of the learner's name: within the budget on the save
    # check's longest names (checked here on saving), not within the lower budget below.
    template_version_save(template, "Week 1", "{% for a in learner.first_name %}{% for b in learner.first_name %}.{% endfor %}{% endfor %}\n")
    learner_in(cohort)
    learner_in(cohort)
    [chunk] = deliveries_dispatch(at(START, 10)).chunks
    first, second = Delivery.objects.filter(pk__in=chunk).order_by("due_at", "pk").select_related("learner")  # the send order
    Learner.objects.filter(pk=first.learner_id).update(first_name="L" * 60)  # 60 + 3,600 steps
    Learner.objects.filter(pk=second.learner_id).update(first_name="Bo")  # 2 + 4
    monkeypatch.setattr(sandbox, "STEPS_MAX", 1000)

    report = deliveries_send(chunk, now=at(START, 10))

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "failed"
    assert first.reason == "the template failed for this learner: it took more than 1,000 steps (loop turns, calls and operations)"
    assert second.status == "sent" and [m.to for m in mail.outbox] == [[second.learner.email]]
    assert (report.sent, report.failed) == (1, 1)


def test_out_of_time_while_rendering_puts_that_row_and_the_rest_of_the_chunk_back_and_stops(cohort, monkeypatch):
    for _ in range(3):
        learner_in(cohort)
    [chunk] = deliveries_dispatch(at(START, 10)).chunks
    real_render, rendered = sending.email_render, []

    def render(version, context, header):
        rendered.append(header)
        if len(rendered) == 2:  # Celery's soft time limit, arriving during the second learner's render
            raise SoftTimeLimitExceeded()
        return real_render(version, context, header)

    monkeypatch.setattr(sending, "email_render", render)

    with pytest.raises(SoftTimeLimitExceeded):
        deliveries_send(chunk, now=at(START, 10))

    sent, in_flight, not_reached = Delivery.objects.filter(pk__in=chunk).order_by("due_at", "pk")
    assert sent.status == "sent" and rendered[1].endswith(f"id={in_flight.pk}")
    for row in (in_flight, not_reached):
        assert (row.status, row.claim, row.claimed_at, row.queued_at, row.provider_call_at) == ("pending", None, None, None, None)
        assert row.reason_code == "out_of_time"
    assert len(mail.outbox) == 1

    rendered.append("the time limit has passed")  # the next pass renders without interruption
    run_pass(at(START, 10, 1))
    assert weekly(cohort, 1).filter(status="sent").count() == 3 and len(mail.outbox) == 3


def test_out_of_time_during_the_provider_call_leaves_that_row_ambiguous_the_rest_pending_and_stops(cohort, provider):
    for _ in range(3):
        learner_in(cohort)
    [chunk] = deliveries_dispatch(at(START, 10)).chunks
    first, second, third = Delivery.objects.filter(pk__in=chunk).order_by("due_at", "pk").select_related("learner")  # the send order
    provider[second.learner.email] = [SoftTimeLimitExceeded()]  # raised inside the provider call

    with pytest.raises(SoftTimeLimitExceeded):
        deliveries_send(chunk, now=at(START, 10))

    sent, in_flight, not_reached = Delivery.objects.filter(pk__in=chunk).order_by("due_at", "pk")
    assert (sent.pk, in_flight.pk, not_reached.pk) == (first.pk, second.pk, third.pk)
    assert sent.status == "sent"
    assert (in_flight.status, in_flight.reason, in_flight.reason_code, in_flight.claim) == ("failed", AMBIGUOUS_DETAIL, "ambiguous", None)
    # The pass's moment moved on by the time the chunk has taken (the claim's lease).
    assert at(START, 10) <= in_flight.provider_call_at < at(START, 10, 1)
    assert (not_reached.status, not_reached.claim, not_reached.queued_at, not_reached.provider_call_at) == ("pending", None, None, None)

    run_pass(at(START, 10, 1))  # the row not reached is sent; the ambiguous one waits for an organizer
    not_reached.refresh_from_db()
    in_flight.refresh_from_db()
    assert (not_reached.status, in_flight.status) == ("sent", "failed")
    assert sorted(m.to[0] for m in mail.outbox) == sorted([first.learner.email, third.learner.email])


def test_a_week_without_a_template_waits_for_it_then_reaches_every_time_zone(cohort):
    EmailTemplate.objects.filter(course=cohort.course, kind=EmailKind.WEEK, week_number=1).delete()
    lisbon, sydney = learner_in(cohort, "Europe/Lisbon"), learner_in(cohort, "Australia/Sydney")

    run_pass(at(START, 10))  # due everywhere by now; no template yet
    for row in weekly(cohort, 1):
        assert (row.status, row.reason_code, row.attempts) == ("pending", "waiting_for_template", 0)
    week_one = EmailTemplate.objects.create(course=cohort.course, kind=EmailKind.WEEK, week_number=1)
    template_version_save(week_one, "Week 1", "Hello {{ learner.first_name }}\n")  # added 30 minutes late
    run_pass(at(START, 10, 30))

    assert {row.learner_id: row.status for row in weekly(cohort, 1)} == {lisbon.learner_id: "sent", sydney.learner_id: "sent"}


def test_a_week_whose_template_never_comes_is_skipped_when_the_catch_up_window_closes(cohort, settings):
    EmailTemplate.objects.filter(course=cohort.course, kind=EmailKind.WEEK, week_number=1).delete()
    learner_in(cohort)
    run_pass(at(START, 10))

    run_pass(at(START, 10) + settings.DELIVERY_CATCH_UP_LIMIT + datetime.timedelta(hours=1))

    row = weekly(cohort, 1).get()
    assert (row.status, row.reason_code) == ("skipped", "no_template")
    assert not mail.outbox


# --- Crashes and catch-up ------------------------------------------------------------------------------


def test_rows_left_sending_are_reclaimed_and_the_ambiguous_one_is_not_resent(cohort, settings):
    for _ in range(3):
        learner_in(cohort)
    now = at(START, 10)
    report = deliveries_dispatch(now)
    never_called, in_flight, _ = Delivery.objects.filter(pk__in=report.chunks[0]).order_by("pk")
    # A worker claimed the chunk, started the provider call for one row, and died.
    Delivery.objects.filter(pk__in=report.chunks[0]).update(status="sending", claimed_at=now)
    Delivery.objects.filter(pk=in_flight.pk).update(provider_call_at=now)

    assert rows_reclaim(now + datetime.timedelta(minutes=5)) == (0, 0)  # still within the timeout
    later = now + settings.DELIVERY_SENDING_TIMEOUT + datetime.timedelta(minutes=1)
    run_pass(later)

    never_called.refresh_from_db()
    in_flight.refresh_from_db()
    assert never_called.status == "sent"
    assert in_flight.status == "failed" and in_flight.reason_code == "ambiguous"
    assert weekly(cohort, 1).filter(status="sent").count() == 2

    assert deliveries_resend_failed(cohort, EmailKind.WEEK, 1, later) == 1  # an organizer decides
    run_pass(later + datetime.timedelta(minutes=1))
    in_flight.refresh_from_db()
    assert in_flight.status == "sent"


def test_one_statement_marks_a_row_sent_and_the_next_called_each_only_while_this_claim_holds_it(cohort):
    for _ in range(3):
        learner_in(cohort)
    now, later = at(START, 10), at(START, 10, 1)
    [chunk] = deliveries_dispatch(now).chunks
    first, second, third = Delivery.objects.filter(pk__in=chunk).order_by("due_at", "pk")
    claim = ledger.rows_claim(chunk, now)
    assert ledger.row_calling(first.pk, claim, now)

    assert ledger.row_sent_then_calling(first.pk, now, "id-1", second.pk, later, claim) == (True, True)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.sent_at, first.provider_message_id, first.claim, first.reason_code) == ("sent", now, "id-1", None, "")
    assert (second.status, second.provider_call_at, second.claimed_at, second.claim) == ("sending", later, later, claim)

    Delivery.objects.filter(pk=third.pk).update(claim=uuid.uuid4())  # reclaimed and taken by another pass meanwhile
    assert ledger.row_sent_then_calling(second.pk, later, "id-2", third.pk, later, claim) == (True, False)
    third.refresh_from_db()
    assert (third.status, third.provider_call_at) == ("sending", None)


class WorkerKilled(BaseException):
    """The process dies here: nothing in the sending code catches it or settles a row."""


@pytest.mark.parametrize("killed", ["before the write", "after the write"])
def test_a_worker_killed_at_the_write_between_two_emails_costs_one_email_never_a_duplicate(cohort, settings, monkeypatch, killed):
    # Row 1's "sent" and row 2's "calling" are one statement: killed before it commits, row 1
    # (sent, not yet recorded) is the one in doubt; killed after it, row 2 (maybe sent).
    for _ in range(3):
        learner_in(cohort)
    now = at(START, 10)
    [chunk] = deliveries_dispatch(now).chunks
    first, second, third = Delivery.objects.filter(pk__in=chunk).order_by("due_at", "pk").select_related("learner")  # the send order
    write = ledger.row_sent_then_calling

    def die(*args):
        if killed == "after the write":
            write(*args)
        raise WorkerKilled

    monkeypatch.setattr(ledger, "row_sent_then_calling", die)
    with pytest.raises(WorkerKilled):
        deliveries_send(chunk, now=now)
    monkeypatch.undo()

    later = now + settings.DELIVERY_SENDING_TIMEOUT + datetime.timedelta(minutes=1)
    in_doubt = first if killed == "before the write" else second
    assert rows_reclaim(later) == (2 if killed == "before the write" else 1, 1)
    run_pass(later)

    rows = {row.pk: row for row in Delivery.objects.filter(pk__in=chunk)}
    assert (rows[in_doubt.pk].status, rows[in_doubt.pk].reason_code) == ("failed", "ambiguous")
    assert all(row.status == "sent" for pk, row in rows.items() if pk != in_doubt.pk)
    # Before the write, row 1 had left and row 2 had not; after it, row 2 was marked as called
    # but the worker died before the call: a gap an organizer sees, never a second copy.
    mailed = [first, second, third] if killed == "before the write" else [first, third]
    assert sorted(m.to[0] for m in mail.outbox) == sorted(row.learner.email for row in mailed)


def test_a_slow_worker_whose_rows_were_reclaimed_does_not_send_them(cohort, settings):
    learner_in(cohort)
    now = at(START, 10)
    [chunk] = deliveries_dispatch(now).chunks
    Delivery.objects.filter(pk__in=chunk).update(status="sending", claimed_at=now)  # a worker, not dead, just slow
    later = now + settings.DELIVERY_SENDING_TIMEOUT + datetime.timedelta(minutes=1)
    rows_reclaim(later)
    report = deliveries_send(chunk, now=later)  # the reclaimed row is claimed afresh and sent once
    assert report.sent == 1

    # The slow worker wakes up holding its old, stale claim: it may neither call the provider
    # nor write any outcome over the row another worker has since sent.
    row = Delivery.objects.get(pk=chunk[0])
    stale_claim = uuid.uuid4()
    assert not ledger.row_calling(row.pk, stale_claim, later)
    assert not ledger.row_sent(row.pk, stale_claim, later, "stale-id")
    assert ledger.row_sent_then_calling(row.pk, later, "stale-id", row.pk, later, stale_claim) == (False, False)
    assert not ledger.row_retry(row.pk, stale_claim, later, "stale retry")
    assert not ledger.row_end(row.pk, stale_claim, "failed", "gave_up", "stale failure")
    assert ledger.rows_release(stale_claim, "out_of_time", "stale release") == 0
    assert ledger.rows_ambiguous(stale_claim) == 0
    row.refresh_from_db()
    assert (row.status, row.reason_code) == ("sent", "")
    assert len(mail.outbox) == 1


def test_after_a_two_day_outage_what_fell_due_is_sent_oldest_first(cohort):
    lisbon, sydney = learner_in(cohort, "Europe/Lisbon"), learner_in(cohort, "Australia/Sydney")

    report = deliveries_dispatch(at(START + datetime.timedelta(days=2), 9))

    rows = Delivery.objects.filter(pk__in=report.chunks[0])
    assert [row.learner_id for row in sorted(rows, key=lambda row: report.chunks[0].index(row.pk))][:2] == [
        sydney.learner_id, lisbon.learner_id,
    ]  # Sydney's Monday came first
    deliveries_send(report.chunks[0], now=at(START + datetime.timedelta(days=2), 9))
    assert weekly(cohort, 1).filter(status="sent").count() == 2


def test_a_week_due_more_than_three_days_ago_is_skipped_unless_sent_on_purpose(cohort):
    learner_in(cohort)
    late = at(START + datetime.timedelta(days=4), 10)

    run_pass(late)

    row = weekly(cohort, 1).get()
    assert row.status == "skipped" and row.reason.startswith("due more than 3 days")
    assert deliveries_send_week_now(cohort, 1, late) == 1
    run_pass(late)
    row.refresh_from_db()
    assert row.status == "sent"


def test_after_an_eight_day_outage_only_the_weeks_within_the_catch_up_window_go_out(cohort):
    learner_in(cohort)
    deliveries_dispatch(at(START, 10))  # week 1 planned and queued; then no worker ran for 8 days
    assert weekly(cohort, 1).get().status == "pending"

    run_pass(at(START + datetime.timedelta(days=8), 10))

    assert weekly(cohort, 1).values_list("status", "reason_code").get() == ("skipped", "too_late")
    assert weekly(cohort, 2).get().status == "sent"  # due a day ago, within the window
    assert [message.subject.startswith("Week 2") for message in mail.outbox] == [True]


def test_a_paused_cohort_sends_nothing_until_resumed(cohort):
    learner_in(cohort)
    cohort.sending_paused = True
    cohort.save()
    run_pass(at(START, 10))
    assert not Delivery.objects.filter(status="sent").exists()

    cohort.sending_paused = False
    cohort.save()
    run_pass(at(START, 11))
    assert weekly(cohort, 1).get().status == "sent"


# --- Nobody is mailed against their will ------------------------------------------------------------------


@pytest.mark.parametrize("change", ["switched", "paused", "left", "unsubscribed", "erased"])
def test_a_learner_who_moved_on_gets_nothing_more_from_the_old_cohort(cohort, course, change):
    later = Cohort.objects.create(course=course, name="Spring", slug="spring", start_date=START + datetime.timedelta(weeks=6),
                                  signup_opens_on=START, signup_closes_on=START + datetime.timedelta(weeks=6))
    enrollment = learner_in(cohort)
    run_pass(at(START, 10))
    report = deliveries_dispatch(at(START + datetime.timedelta(weeks=1), 10))  # week 2 is in the ledger, queued
    learner = enrollment.learner
    today, now = START + datetime.timedelta(weeks=1), at(START + datetime.timedelta(weeks=1), 10)
    if change == "switched":
        enrollment_switch_cohort(enrollment, later, today=today, now=now)
    elif change == "paused":
        enrollment_pause(enrollment, now=now)
    elif change == "left":
        enrollment_leave(enrollment, now=now)
    elif change == "unsubscribed":
        learner_unsubscribe(learner, now=now)
    else:
        learner_erase(learner, today=today)
    outbox_before = len(mail.outbox)

    for chunk in report.chunks:
        deliveries_send(chunk, now=now)
    for week in range(2, 5):
        run_pass(at(START + datetime.timedelta(weeks=week - 1), 10))

    assert len([m for m in mail.outbox[outbox_before:] if "cohort=winter" in m.extra_headers["X-Mooc-Delivery"]]) == 0
    assert not Delivery.objects.filter(cohort=cohort, status="sent", week_number__gte=2).exists()
    if change != "erased":
        assert weekly(cohort, 2).get().status == "skipped"


# --- Operators --------------------------------------------------------------------------------------------


def test_send_due_dry_run_prints_and_changes_nothing(cohort):
    for timezone_name in ["Europe/Lisbon", "Europe/Lisbon", "America/New_York"]:
        learner_in(cohort, timezone_name, learner__confirmed_at=at(START, 0) - datetime.timedelta(days=10))
    output = StringIO()

    call_command("send_due", "--now", "2026-11-30T15:00:00+00:00", "--dry-run", stdout=output)

    assert output.getvalue().splitlines() == ["Would send: winter week 1: 3", "Would send 3, skip 0, wait 0 (for a template)."]
    assert not Delivery.objects.exists() and not mail.outbox


def test_send_due_sends_and_says_so(cohort):
    learner_in(cohort, learner__confirmed_at=at(START, 0) - datetime.timedelta(days=10))
    output = StringIO()

    call_command("send_due", "--now", "2026-11-30T10:00:00Z", stdout=output)
    call_command("send_due", "--now", "2026-11-30T10:05:00Z", stdout=(again := StringIO()))

    assert output.getvalue().splitlines() == ["To send: winter week 1: 1", "1 sent, 0 failed, 0 skipped, 0 retrying, 0 waiting."]
    assert again.getvalue().splitlines() == ["Nothing is due.", "0 sent, 0 failed, 0 skipped, 0 retrying, 0 waiting."]


def test_send_due_refuses_a_malformed_moment():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--now must be an ISO 8601 moment"):
        call_command("send_due", "--now", "next monday")


def test_overdue_emails_show_on_healthz_and_in_the_log(cohort, client, caplog, clock):
    learner_in(cohort, learner__confirmed_at=at(START, 0) - datetime.timedelta(days=10))
    deliveries_dispatch(at(START, 9))  # due at 09:00 in Lisbon: in the ledger, but no worker picks it up

    assert deliveries_overdue(at(START, 9, 59)) == 0
    assert deliveries_overdue(at(START, 10, 1)) == 1
    clock.move_to(at(START, 11, 30))
    body = client.get("/healthz").json()
    assert body["deliveries"] == {"ok": False, "overdue": 1, "paused_by_fault": []}
    assert body["status"] == "ok"  # the site itself works
    [chunk] = deliveries_dispatch(at(START, 11, 31)).chunks  # queued again: its message may be lost
    deliveries_dispatch(at(START, 11, 32))  # still overdue: said once, not every minute
    assert caplog.text.count("Overdue: 1 emails were due more than an hour ago") == 1
    caplog.set_level(logging.INFO, logger="scheduler.planning")
    deliveries_send(chunk, now=at(START, 11, 33))  # a worker at last
    deliveries_dispatch(at(START, 11, 34))
    assert "Caught up: no email is overdue any more" in caplog.text


def test_a_catch_up_just_put_in_the_ledger_is_not_overdue_yet(cohort):
    learner_in(cohort, learner__confirmed_at=at(START, 0) - datetime.timedelta(days=10))
    two_days_late = at(START + datetime.timedelta(days=2), 9)
    deliveries_dispatch(two_days_late)  # week 1, two days late, put in the ledger now

    assert deliveries_overdue(two_days_late) == 0
    assert deliveries_overdue(two_days_late + datetime.timedelta(minutes=59)) == 0
    assert deliveries_overdue(two_days_late + datetime.timedelta(hours=1, minutes=1)) == 1  # an hour on, still unsent


def test_a_chunk_loads_its_data_in_the_same_queries_whatever_its_size(cohort):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(40):
        learner_in(cohort)
    report = deliveries_dispatch(at(START, 10))
    ids = report.chunks[0]

    def reads(chunk):
        with CaptureQueriesContext(connection) as queries:
            deliveries_send(chunk, now=at(START, 10))
        return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]

    assert len(reads(ids[:10])) == len(reads(ids[10:40]))


def test_a_queued_chunk_is_not_queued_again_while_it_waits_behind_a_long_drain(cohort):
    learner_in(cohort)
    first = deliveries_dispatch(at(START, 10))
    assert len(first.chunks) == 1

    waiting = deliveries_dispatch(at(START, 10) + datetime.timedelta(minutes=45))  # still in the broker, behind others
    assert waiting.chunks == []

    lost = deliveries_dispatch(at(START, 10) + queue_again_after() + datetime.timedelta(minutes=1))  # past redelivery: lost
    assert lost.chunks == first.chunks
