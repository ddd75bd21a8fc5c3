"""Two signups for one address at the same moment still make one learner (on PostgreSQL)."""

import threading

import pytest
from django.core import mail
from django.db import connection

from mooc.testing.threads import in_threads
from signups.models import Enrollment, Learner
from signups.services import Signup, learner_signup

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("known", [False, True], ids=["new address", "known address"])
def test_simultaneous_signups_for_one_address_make_one_learner(next_cohort, later_cohort, known, clock):
    if known:  # signed up before, unconfirmed, since left: the signups race for its new enrollment
        Learner.objects.create(email="twin@example.org", timezone="UTC", experience="none")
    start = threading.Barrier(4)
    errors = []

    def sign_up(email, cohort):
        try:
            start.wait(timeout=10)
            learner_signup(
                Signup(email=email, first_name="Twin", timezone="UTC", experience="none", wants_group=True,
                       course=cohort.course, cohort=cohort),
                now=clock.now(),
            )
        except Exception as error:  # noqa: BLE001 - reported below, with the thread's error
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=sign_up, args=(email, cohort))
        for email, cohort in [
            ("twin@example.org", next_cohort), (" TWIN@example.org", later_cohort),
            ("Twin@Example.org ", next_cohort), ("twin@example.ORG", later_cohort),
        ]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert Learner.objects.count() == 1
    assert Enrollment.objects.count() == 1
    assert len(mail.outbox) == 1


def test_twelve_simultaneous_signups_for_the_last_seat_fill_it_once(next_cohort, settings, clock):
    from django.test import Client

    from signups.tests.factories import EnrollmentFactory
    from signups.tests.test_signup import form_data

    settings.SIGNUP_LIMIT_PER_IP_PER_HOUR = 100
    next_cohort.capacity = 7
    next_cohort.save()
    EnrollmentFactory.create_batch(6, cohort=next_cohort)
    start = threading.Barrier(12)
    answers = []

    def sign_up(number):
        def post():
            client = Client()
            start.wait(timeout=10)
            response = client.post("/signup/", form_data(email=f"seat{number}@example.org", cohort=next_cohort.slug))
            answers.append((response.status_code, "full" in response.content.decode()))
        return post

    assert in_threads(*[sign_up(number) for number in range(12)]) == []

    # One gets the seat. The others hear the round is full: under the lock (409), or, when they
    # come after the winner committed, from the form, which no longer offers the round (400).
    assert sorted(answers)[0] == (302, False) and len(answers) == 12
    assert all(status in (400, 409) and says_full for status, says_full in sorted(answers)[1:]), answers
    assert next_cohort.enrollments.count() == 7
    assert len(mail.outbox) == 1


def test_an_unsubscribe_during_an_import_is_never_undone(next_cohort, clock, monkeypatch):
    from signups import imports
    from signups.services import learner_unsubscribe
    from signups.tests.factories import EnrollmentFactory, LearnerFactory

    learner = LearnerFactory(email="leaving@example.org", confirmed_at=None)
    EnrollmentFactory(learner=learner, cohort=next_cohort, status=Enrollment.Status.PENDING)
    importing, unsubscribed = threading.Event(), threading.Event()
    cohort_lock = imports.cohort_lock

    def slow_cohort_lock(*args, **kwargs):  # the batch holds the learners' locks by now
        importing.set()
        unsubscribed.wait(timeout=1)  # the unsubscribe lands now, or waits for the import's lock
        return cohort_lock(*args, **kwargs)

    monkeypatch.setattr(imports, "cohort_lock", slow_cohort_lock)
    text = "email,first_name,timezone,experience\nleaving@example.org,Lea,Europe/Paris,none\n"

    def run_import():
        imports.learners_import(next_cohort, text, confirmed=True, now=clock.now())

    def unsubscribe():
        importing.wait(timeout=10)
        learner_unsubscribe(Learner.objects.get(pk=learner.pk), now=clock.now())
        unsubscribed.set()

    assert in_threads(run_import, unsubscribe) == []

    learner.refresh_from_db()
    assert learner.unsubscribed_at is not None
    assert not learner.enrollments.filter(status__in=Enrollment.CURRENT).exists()


def test_a_pause_during_a_move_pauses_the_enrollment_the_learner_moved_to(running_cohort, next_cohort, clock, monkeypatch):
    from signups import services
    from signups.tests.factories import EnrollmentFactory

    enrollment = EnrollmentFactory(cohort=running_cohort)
    moving, paused = threading.Event(), threading.Event()
    seat_take = services._seat_take

    def slow_seat_take(*args, **kwargs):
        moving.set()
        paused.wait(timeout=1)  # the pause lands now, or waits for the move's lock
        return seat_take(*args, **kwargs)

    monkeypatch.setattr(services, "_seat_take", slow_seat_take)

    def move():
        services.learners_move_to_cohort([enrollment.learner], next_cohort, now=clock.now())

    def pause():
        moving.wait(timeout=10)
        services.enrollment_pause(Enrollment.objects.get(pk=enrollment.pk), now=clock.now())
        paused.set()

    assert in_threads(move, pause) == []

    current = Enrollment.objects.get(learner=enrollment.learner, status__in=Enrollment.CURRENT)
    assert (current.cohort, current.status) == (next_cohort, Enrollment.Status.PAUSED)
