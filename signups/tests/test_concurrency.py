"""Two signups for one address at the same moment still make one learner (on PostgreSQL)."""

import threading

import pytest
from django.core import mail
from django.db import connection

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
