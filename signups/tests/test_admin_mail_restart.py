"""Organizers see why mail to a learner stopped, and restart it once a bounced address is fixed:
the action over many learners, the button on one learner's page; never after a complaint, and
only with signups.lift_suppression."""

import datetime
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from signups.models import Learner, Suppression, email_digest
from signups.suppressions import learner_mail_stop
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:signups_learner_changelist"
Reason = Suppression.Reason


@pytest.fixture
def learners(running_cohort, clock):
    """One learner per case: fixed after a bounce, a bounce not fixed, fixed before a later
    refusal, a complaint (even one who 'fixed' before it), and one whose mail never stopped."""
    past = clock.now() - datetime.timedelta(days=2)

    def stopped(email, reason, fixed_after: datetime.timedelta | None = None):
        learner = EnrollmentFactory(cohort=running_cohort, learner__email=email).learner
        learner_mail_stop(learner.pk, reason, past)
        if fixed_after is not None:
            Learner.objects.filter(pk=learner.pk).update(address_fixed_at=past + fixed_after)
        return Learner.objects.get(pk=learner.pk)

    return {
        "fixed": stopped("fixed@example.org", Reason.BOUNCED, datetime.timedelta(days=1)),
        "soft": stopped("soft@example.org", Reason.SOFT_BOUNCED, datetime.timedelta(hours=1)),
        "unfixed": stopped("unfixed@example.org", Reason.REFUSED),
        "fixed_too_early": stopped("early@example.org", Reason.BOUNCED, -datetime.timedelta(days=1)),
        "complained": stopped("spam@example.org", Reason.COMPLAINED, datetime.timedelta(days=1)),
        "mailed": EnrollmentFactory(cohort=running_cohort, learner__email="mailed@example.org").learner,
    }


def emails(response) -> list[str]:
    return sorted(learner.email for learner in response.context["cl"].result_list)


def run_action(client, learners_chosen):
    return client.post(
        reverse(CHANGELIST),
        {"action": "restart_mail", "index": "0", ACTION_CHECKBOX_NAME: [learner.pk for learner in learners_chosen]},
        follow=True,
    )


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def organizer_without(permission: str) -> Client:
    """A staff member who may see and change learners, but not `permission`."""
    user = User.objects.create_user("helper", "helper@staff.example", "pw", is_staff=True)
    for codename in ("view_learner", "change_learner", "view_enrollment"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    assert not user.has_perm(permission)
    client = Client()
    client.force_login(user)
    return client


def test_the_list_says_why_mail_stopped_and_filters_by_it(admin_client, learners):
    url = reverse(CHANGELIST)

    page = text(admin_client.get(url))

    assert "mail stopped because" in page.lower()
    assert "Hard bounce" in page and "Marked our email as spam" in page and "Soft bounces, several in a row" in page
    assert emails(admin_client.get(url, {"stopped": "bounced"})) == ["early@example.org", "fixed@example.org"]
    assert emails(admin_client.get(url, {"stopped": "complained"})) == ["spam@example.org"]
    # Who fixed their address since it failed: those an organizer may restart.
    assert emails(admin_client.get(url, {"stopped": "fixed"})) == ["fixed@example.org", "soft@example.org"]


def test_the_action_restarts_the_fixed_and_says_why_not_for_each_other(admin_client, learners):
    response = run_action(admin_client, learners.values())

    page = text(response)
    assert "Restarted mail to 2 learners: " in page
    assert "fixed@example.org" in page and "soft@example.org" in page
    assert "Not restarted: 4 learners" in page
    assert "unfixed@example.org: they have not fixed their address on their page since it bounced" in page
    assert "early@example.org: they have not fixed their address on their page since it bounced" in page
    assert "spam@example.org: their mail stopped because they said no (marked our email as spam)" in page
    assert "mailed@example.org: their mail is not stopped" in page
    stopped = set(Learner.objects.filter(unsubscribed_at__isnull=False).values_list("email", flat=True))
    assert stopped == {"unfixed@example.org", "early@example.org", "spam@example.org"}
    suppressed = set(Suppression.objects.values_list("email_digest", flat=True))
    assert suppressed == {email_digest(f"{name}@example.org") for name in ("unfixed", "early", "spam")}  # a complaint is never lifted


def test_the_learner_page_shows_the_reason_the_fix_and_a_restart_button(admin_client, learners):
    fixed = learners["fixed"]
    url = reverse("admin:signups_learner_change", args=[fixed.pk])

    page = text(admin_client.get(url))

    assert "Hard bounce" in page and "Address fixed at" in page
    assert 'form="restart-mail"' in page and reverse("admin:signups_learner_restart_mail", args=[fixed.pk]) in page
    restart = reverse("admin:signups_learner_restart_mail", args=[fixed.pk])
    assert admin_client.get(restart).status_code == 405
    after = admin_client.post(restart, follow=True)
    assert "Restarted mail to 1 learner: fixed@example.org." in text(after)
    assert not Learner.objects.get(pk=fixed.pk).is_unsubscribed
    assert "restart-mail" not in text(admin_client.get(url))  # nothing stopped: no button


def test_the_learner_page_of_a_complaint_says_why_it_cannot_be_restarted(admin_client, learners):
    complained = learners["complained"]

    page = text(admin_client.get(reverse("admin:signups_learner_change", args=[complained.pk])))

    assert "Mail cannot be restarted: their mail stopped because they said no" in page
    assert 'form="restart-mail"' not in page
    refused = admin_client.post(reverse("admin:signups_learner_restart_mail", args=[complained.pk]), follow=True)
    assert "Not restarted: 1 learner" in text(refused)
    assert Learner.objects.get(pk=complained.pk).is_unsubscribed


def test_without_lift_suppression_the_action_is_neither_offered_nor_run(learners):
    client = organizer_without("signups.lift_suppression")

    changelist = client.get(reverse(CHANGELIST)).content.decode()
    run_action(client, [learners["fixed"]])
    page = client.get(reverse("admin:signups_learner_change", args=[learners["fixed"].pk])).content.decode()
    button = client.post(reverse("admin:signups_learner_restart_mail", args=[learners["fixed"].pk]))

    assert 'value="restart_mail"' not in changelist and 'value="unsubscribe"' not in changelist
    assert "restart-mail" not in page and "Hard bounce" in page
    assert button.status_code == 403
    assert Learner.objects.get(pk=learners["fixed"].pk).is_unsubscribed


def test_with_lift_suppression_the_action_is_offered(admin_client, learners):
    assert 'value="restart_mail"' in admin_client.get(reverse(CHANGELIST)).content.decode()
