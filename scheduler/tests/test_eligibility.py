"""Who gets which email when: late joiners, resumers, movers, returners and switchers.

A week is due for a learner at the later of its own moment and the moment they became
mailable in the round; a week that ended before that moment is not theirs.
"""

import datetime

import pytest
from django.core import mail

from cohorts.models import Cohort
from scheduler.models import Delivery, EmailKind
from scheduler.tests.helpers import BEFORE_START, START, at, learner_in, run_pass, weekly
from signups.models import Enrollment
from signups.services import (
    Signup, enrollment_confirm, enrollment_leave, enrollment_pause, enrollment_resume, enrollment_switch_cohort,
    learner_signup, learners_move_to_cohort,
)
from signups.tokens import confirmation_token

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]

DAY = datetime.timedelta(days=1)
WEEK = datetime.timedelta(weeks=1)


def passes(start: datetime.datetime, end: datetime.datetime, every=datetime.timedelta(hours=3)):
    """Send passes every few hours from `start` until `end`, as beat runs them."""
    moment = start
    while moment <= end:
        run_pass(moment)
        moment += every


def sign_up_and_confirm(cohort, email, now, timezone_name="Europe/Lisbon") -> Enrollment:
    signup = Signup(email=email, first_name="Late", timezone=timezone_name, experience="none", wants_group=True,
                    course=cohort.course, cohort=cohort)
    enrollment = learner_signup(signup, now=now)
    return enrollment_confirm(confirmation_token(enrollment.pk), now=now).enrollment


def emails_to(address: str, kind: str) -> list:
    return [m for m in mail.outbox if m.to == [address] and m.extra_headers.get("X-Mooc-Delivery", "").startswith(kind)]


@pytest.fixture
def open_cohort(cohort):
    """The round takes signups through its first week, as the demo's rounds do."""
    cohort.signup_closes_on = START + datetime.timedelta(days=6)
    cohort.save()
    return cohort


def test_a_learner_who_joins_on_thursday_of_week_1_gets_week_1_at_once_then_week_2_on_its_monday(open_cohort, clock):
    thursday = at(START + 3 * DAY, 15)
    clock.move_to(thursday)
    enrollment = sign_up_and_confirm(open_cohort, "late@example.org", now=thursday)

    passes(thursday, at(START + WEEK + DAY, 12))  # every 3 hours till Tuesday of week 2

    week_1, week_2 = weekly(open_cohort, 1).get(), weekly(open_cohort, 2).get()
    assert (week_1.status, week_1.due_at, week_1.sent_at, week_1.reason_code) == ("sent", thursday, thursday, "")
    assert (week_2.status, week_2.due_at, week_2.sent_at) == ("sent", at(START + WEEK, 9), at(START + WEEK, 9))
    assert [m.subject for m in emails_to("late@example.org", "week")] == [
        "We begin: week 1 of A Gentle Introduction to Python", "Week 2: more fun with Python",
    ]
    welcome = emails_to("late@example.org", "welcome")
    assert len(welcome) == 1 and "It is in week 1 now, and this week's email follows right away" in welcome[0].body
    assert enrollment.mailable_since == thursday


def test_nobody_who_joins_late_is_blamed_on_an_outage(open_cohort, clock):
    # Five days after week 1's moment: past the catch-up limit, yet theirs and on time.
    saturday = at(START + 5 * DAY, 20)
    clock.move_to(saturday)
    sign_up_and_confirm(open_cohort, "saturday@example.org", now=saturday)

    run_pass(saturday + datetime.timedelta(minutes=1))

    row = weekly(open_cohort, 1).get()
    assert (row.status, row.reason_code) == ("sent", "")
    assert not Delivery.objects.filter(reason_code=Delivery.Reason.TOO_LATE).exists()


def test_resuming_mid_week_gets_the_current_week_at_once_and_never_a_week_that_ended(cohort, clock):
    enrollment = learner_in(cohort, email="pauser@example.org", learner__confirmed_at=BEFORE_START)
    run_pass(at(START, 9))
    assert weekly(cohort, 1).get().status == "sent"

    enrollment_pause(enrollment, now=at(START + 6 * DAY, 10))  # Sunday of week 1
    passes(at(START + WEEK, 0), at(START + WEEK + 2 * DAY, 9))
    assert not weekly(cohort, 2).exists()  # nothing while paused

    wednesday = at(START + WEEK + 2 * DAY, 10)
    enrollment_resume(enrollment, now=wednesday)
    run_pass(wednesday + datetime.timedelta(minutes=1))
    week_2 = weekly(cohort, 2).get()
    assert (week_2.status, week_2.due_at) == ("sent", wednesday)

    enrollment_pause(enrollment, now=at(START + WEEK + 6 * DAY, 10))  # paused through all of week 3
    tuesday_week_4 = at(START + 3 * WEEK + DAY, 11)
    enrollment_resume(enrollment, now=tuesday_week_4)
    run_pass(tuesday_week_4 + datetime.timedelta(minutes=1))

    week_3, week_4 = weekly(cohort, 3).get(), weekly(cohort, 4).get()
    assert (week_3.status, week_3.reason_code) == ("skipped", Delivery.Reason.JOINED_LATER)
    assert (week_4.status, week_4.due_at) == ("sent", tuesday_week_4)
    assert [m.subject.split(":")[0] for m in emails_to("pauser@example.org", "week")] == ["We begin", "Week 2", "Week 4"]


@pytest.fixture
def running_round(cohort):
    """A round that started two weeks before START: in its week 3 during START's week."""
    start = START - 2 * WEEK
    return Cohort.objects.create(course=cohort.course, name="Autumn round", slug="autumn", start_date=start,
                                 signup_opens_on=start - 4 * WEEK, signup_closes_on=start + 6 * DAY)


def test_a_learner_moved_into_a_running_round_gets_its_current_week_and_none_before(cohort, running_round, clock):
    enrollment = learner_in(cohort, email="mover@example.org", learner__confirmed_at=BEFORE_START)
    wednesday = at(START + 2 * DAY, 13)  # Wednesday of the running round's week 3
    clock.move_to(wednesday)

    report = learners_move_to_cohort([enrollment.learner], running_round, now=wednesday)
    run_pass(wednesday + datetime.timedelta(minutes=1))

    assert report.moved == 1
    assert (weekly(running_round, 3).get().status, weekly(running_round, 3).get().due_at) == ("sent", wednesday)
    assert weekly(running_round, 2).get().reason_code == Delivery.Reason.JOINED_LATER
    assert not weekly(running_round, 1).filter(status="sent").exists()
    welcome = emails_to("mover@example.org", "welcome")
    assert len(welcome) == 1 and "You moved from Winter round to Autumn round" in welcome[0].body
    assert "is in week 3" in welcome[0].body


def test_a_returning_learner_gets_a_welcome_for_the_new_round(cohort, running_round, clock):
    # Confirmed long ago in the earlier round, left it, and comes back for the next one.
    old = learner_in(running_round, email="back@example.org", learner__confirmed_at=BEFORE_START - 8 * WEEK)
    enrollment_leave(old, now=BEFORE_START - DAY)

    enrollment = sign_up_and_confirm(cohort, "back@example.org", now=BEFORE_START)
    run_pass(BEFORE_START + datetime.timedelta(minutes=1))

    assert enrollment.learner.confirmed_at == BEFORE_START - 8 * WEEK  # kept: the first confirmation
    welcome = Delivery.objects.get(kind=EmailKind.WELCOME, learner=enrollment.learner, cohort=cohort)
    assert (welcome.status, welcome.due_at) == ("sent", BEFORE_START)
    body = emails_to("back@example.org", "welcome")[0].body
    assert "which starts on Monday 30 November 2026" in body and "You moved from" not in body


def test_a_learner_who_drops_back_gets_the_new_rounds_welcome_saying_where_they_came_from(cohort, running_round, clock):
    enrollment = learner_in(running_round, email="switch@example.org", learner__confirmed_at=BEFORE_START - 6 * WEEK)
    Delivery.objects.create(learner=enrollment.learner, cohort=running_round, kind=EmailKind.WELCOME, week_number=0,
                            due_at=BEFORE_START - 6 * WEEK, status=Delivery.Status.SENT)

    moved = enrollment_switch_cohort(enrollment, cohort, today=BEFORE_START.date(), now=BEFORE_START)
    run_pass(BEFORE_START + datetime.timedelta(minutes=1))

    assert moved.switched_from == running_round and moved.mailable_since == BEFORE_START
    body = emails_to("switch@example.org", "welcome")[0].body
    assert "You moved from Autumn round to Winter round" in body and "which starts on Monday 30 November 2026" in body


def test_a_group_move_is_told_in_the_next_weekly_email_only(cohort):
    from signups.groups import cohort_groups_form

    enrollments = [learner_in(cohort, learner__confirmed_at=BEFORE_START) for _ in range(6)]
    cohort_groups_form(cohort, now=BEFORE_START)
    passes(at(START, 9), at(START, 9))
    mover = enrollments[0]
    # What re-forming writes when it moves a learner (signups.groups.cohort_groups_reform).
    Enrollment.objects.filter(pk=mover.pk).update(group_moved_at=at(START + 2 * DAY, 12), group_moved_from="Group 2")

    run_pass(at(START + WEEK, 9))
    run_pass(at(START + 2 * WEEK, 9))

    bodies = {m.subject.split(":")[0]: m.body for m in emails_to(mover.learner.email, "week")}
    assert "we moved you from Group 2" not in bodies["We begin"]
    assert "we moved you from Group 2" in bodies["Week 2"]
    assert "we moved you from Group 2" not in bodies["Week 3"]


def test_the_group_introduction_fits_a_learner_who_joins_in_week_3(cohort, running_round, clock):
    from signups.groups import cohort_groups_form

    for _ in range(6):
        learner_in(running_round, learner__confirmed_at=BEFORE_START - 4 * WEEK)
    cohort_groups_form(running_round, now=BEFORE_START - 3 * WEEK)
    wednesday = at(START + 2 * DAY, 13)
    clock.move_to(wednesday)

    sign_up_and_confirm(running_round, "week3@example.org", now=wednesday)
    run_pass(wednesday + datetime.timedelta(minutes=1))

    intro = emails_to("week3@example.org", "group_intro")[0].body
    assert "The round is in week 3" in intro
    assert "arrives when the round starts" not in intro
