"""Seats: who holds one, and every way into a round keeps to its capacity (one at a time;
the races are in test_concurrency.py, on PostgreSQL)."""

import datetime

import pytest
from django.core import mail

from signups.imports import learners_import
from signups.models import Enrollment, Learner
from signups.selectors import cohort_seats_taken, cohorts_open_with_room, enrollments_mailable
from signups.services import (
    CohortFull, enrollment_pause, enrollment_switch_cohort, learners_move_to_cohort,
)
from signups.tests.factories import EnrollmentFactory, LearnerFactory
from signups.tests.test_signup import form_data

pytestmark = pytest.mark.django_db


def pending_in(cohort, link_sent_at):
    learner = LearnerFactory(confirmed_at=None, confirmation_sent_at=link_sent_at)
    return EnrollmentFactory(cohort=cohort, learner=learner, status=Enrollment.Status.PENDING)


@pytest.fixture
def small_round(next_cohort):
    next_cohort.capacity = 2
    next_cohort.save()
    return next_cohort


def test_a_seat_is_held_by_a_learner_or_a_live_confirmation_link_only(small_round, clock):
    EnrollmentFactory(cohort=small_round)  # active
    pending_in(small_round, link_sent_at=clock.now() - datetime.timedelta(days=8))  # the link expired: a typo, a bot
    pending_in(small_round, link_sent_at=None)  # the link never left (a failed send)
    EnrollmentFactory(cohort=small_round, status=Enrollment.Status.LEFT)

    assert cohort_seats_taken(small_round, clock.now()) == 1
    assert small_round in cohorts_open_with_room(clock.now())

    pending_in(small_round, link_sent_at=clock.now() - datetime.timedelta(days=6))
    assert cohort_seats_taken(small_round, clock.now()) == 2
    assert small_round not in cohorts_open_with_room(clock.now())
    clock.shift(datetime.timedelta(days=1, minutes=1))  # that link expires: its seat comes back
    assert small_round in cohorts_open_with_room(clock.now())


def test_the_last_seat_taken_while_the_form_was_open_is_a_clear_answer(client, small_round, later_cohort, clock):
    EnrollmentFactory(cohort=small_round)
    page = client.get("/").content.decode()
    assert f'value="{small_round.slug}"' in page
    pending_in(small_round, link_sent_at=clock.now())  # someone else takes it meanwhile

    response = client.post("/signup/", form_data(cohort=small_round.slug))

    assert response.status_code in (400, 409)
    assert "full" in str(response.context["form"].errors["cohort"])
    assert not Learner.objects.filter(email="ada.lovelace@example.org").exists()
    assert mail.outbox == []


def test_a_full_round_refuses_switches_moves_and_imports(small_round, running_cohort, clock):
    EnrollmentFactory.create_batch(2, cohort=small_round)
    switcher = EnrollmentFactory(cohort=running_cohort)
    with pytest.raises(CohortFull):
        enrollment_switch_cohort(switcher, small_round, today=clock.today(), now=clock.now())

    report = learners_move_to_cohort([switcher.learner], small_round, now=clock.now())
    assert (report.moved, report.full) == (0, 1)

    imported = learners_import(small_round, "email,timezone,experience\nnew@example.org,UTC,none\n", confirmed=True, now=clock.now())
    assert imported.added == 0 and "full" in imported.refused[0][2]
    assert small_round.enrollments.count() == 2
    switcher.refresh_from_db()
    assert (switcher.cohort, switcher.status) == (running_cohort, Enrollment.Status.ACTIVE)


def test_an_import_takes_the_seats_left_and_refuses_the_rest(small_round, clock):
    EnrollmentFactory(cohort=small_round)
    text = "email,timezone,experience\na@example.org,UTC,none\nb@example.org,UTC,none\n"

    report = learners_import(small_round, text, confirmed=False, now=clock.now())

    assert report.added == 1 and [row[:2] for row in report.refused] == [(3, "b@example.org")]
    assert cohort_seats_taken(small_round, clock.now()) == 2


def test_a_move_keeps_a_pause_that_landed_after_the_caller_read_the_enrollment(running_cohort, next_cohort, clock):
    enrollment = EnrollmentFactory(cohort=running_cohort)
    stale = Enrollment.objects.get(pk=enrollment.pk)  # an organizer's page, read before the learner paused
    enrollment_pause(enrollment, now=clock.now())

    learners_move_to_cohort([stale.learner], next_cohort, now=clock.now())

    moved = Enrollment.objects.get(learner=enrollment.learner, status__in=Enrollment.CURRENT)
    assert (moved.cohort, moved.status, moved.mailable_since) == (next_cohort, Enrollment.Status.PAUSED, None)


def test_a_pause_through_an_old_copy_pauses_the_enrollment_the_learner_has_now(running_cohort, next_cohort, clock):
    enrollment = EnrollmentFactory(cohort=running_cohort)
    learners_move_to_cohort([enrollment.learner], next_cohort, now=clock.now())

    assert enrollment_pause(enrollment, now=clock.now()) is True  # the learner's page was open before the move

    current = Enrollment.objects.get(learner=enrollment.learner, status__in=Enrollment.CURRENT)
    assert (current.cohort, current.status) == (next_cohort, Enrollment.Status.PAUSED)


def test_a_confirmed_learner_on_the_waitlist_who_signs_up_for_an_open_round_joins_it(client, next_cohort, clock):
    learner = LearnerFactory(email="waiting@example.org", confirmed_at=clock.now() - datetime.timedelta(days=30))
    waiting = EnrollmentFactory(learner=learner, cohort=None, course=next_cohort.course)

    before = clock.now()
    response = client.post("/signup/", form_data(email="waiting@example.org", cohort=next_cohort.slug))

    assert response.status_code == 302
    waiting.refresh_from_db()
    assert (waiting.cohort, waiting.status) == (next_cohort, Enrollment.Status.ACTIVE)
    assert before <= waiting.mailable_since <= clock.now()
    assert list(enrollments_mailable(next_cohort)) == [waiting]
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith(f"You are in {next_cohort.name}")
