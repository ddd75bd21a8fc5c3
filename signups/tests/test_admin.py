"""Organizers find learners and act on many at once in the real admin."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.urls import reverse

from signups.models import Enrollment, Learner
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:signups_learner_changelist"


def emails(response) -> list[str]:
    return sorted(learner.email for learner in response.context["cl"].result_list)


@pytest.fixture
def learners(running_cohort, next_cohort):
    return {
        "active": EnrollmentFactory(cohort=running_cohort, learner__email="active@example.org", learner__timezone="Asia/Tokyo").learner,
        "pending": EnrollmentFactory(cohort=next_cohort, status="pending", learner__email="pending@example.org", learner__confirmed_at=None).learner,
        "paused": EnrollmentFactory(cohort=next_cohort, status="paused", learner__email="paused@example.org").learner,
        "waitlisted": EnrollmentFactory(cohort=None, course=next_cohort.course, learner__email="wait@example.org").learner,
    }


def test_learners_are_searchable_and_filterable(admin_client, learners, next_cohort):
    url = reverse(CHANGELIST)
    assert emails(admin_client.get(url, {"q": "PAUSED@"})) == ["paused@example.org"]
    assert emails(admin_client.get(url, {"status": "pending"})) == ["pending@example.org"]
    assert emails(admin_client.get(url, {"status": "active"})) == ["active@example.org"]
    assert emails(admin_client.get(url, {"status": "waitlisted"})) == ["wait@example.org"]
    assert emails(admin_client.get(url, {"cohort": next_cohort.slug})) == ["paused@example.org", "pending@example.org"]
    assert emails(admin_client.get(url, {"timezone": "Asia/Tokyo"})) == ["active@example.org"]
    page = admin_client.get(url).content.decode()
    assert "waitlist" in page and "Emails paused" in page


def test_the_learner_page_opens(admin_client, learners):
    assert admin_client.get(reverse("admin:signups_learner_change", args=[learners["active"].pk])).status_code == 200


def test_resend_confirmation_goes_only_to_those_waiting(admin_client, learners):
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "resend_confirmation", ACTION_CHECKBOX_NAME: [learner.pk for learner in learners.values()]},
        follow=True,
    )

    assert [message.to for message in mail.outbox] == [["pending@example.org"]]
    assert "Queued 1 confirmation email for sending; skipped 3" in response.content.decode()


def test_move_to_cohort_asks_where_then_moves(admin_client, learners, next_cohort, later_cohort):
    selected = [learners["pending"].pk, learners["paused"].pk, learners["active"].pk]
    url = reverse(CHANGELIST)

    ask = admin_client.post(url, {"action": "move_to_cohort", ACTION_CHECKBOX_NAME: selected})
    assert ask.status_code == 200 and "Move them" in ask.content.decode()

    done = admin_client.post(
        url, {"action": "move_to_cohort", ACTION_CHECKBOX_NAME: selected, "apply": "1", "cohort": later_cohort.pk}, follow=True
    )

    assert "Moved 3 learners" in done.content.decode()
    current = {e.learner.email: (e.cohort, e.status) for e in Enrollment.objects.filter(status__in=Enrollment.CURRENT)}
    assert current["pending@example.org"] == (later_cohort, "pending")
    assert current["paused@example.org"] == (later_cohort, "paused")
    assert current["active@example.org"] == (later_cohort, "active")


def test_unsubscribe_action(admin_client, learners):
    admin_client.post(reverse(CHANGELIST), {"action": "unsubscribe", ACTION_CHECKBOX_NAME: [learners["active"].pk]})
    assert Learner.objects.get(email="active@example.org").is_unsubscribed
    assert not Learner.objects.get(email="paused@example.org").is_unsubscribed


def test_other_signups_admin_pages_open(admin_client, learners):
    for name in ["admin:signups_suppression_changelist", "admin:signups_erasure_changelist"]:
        assert admin_client.get(reverse(name)).status_code == 200
