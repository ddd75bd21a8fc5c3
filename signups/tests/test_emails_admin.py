"""Organizers see learners' own emails in the admin and send failed ones again; others may not."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission, User
from django.core import mail
from django.urls import reverse

from mooc.permissions import COURSE_EDITOR, ORGANIZER
from signups.models import LearnerEmail
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:signups_learneremail_changelist"


def staff(client, *, role: str | None = None, permissions: tuple[str, ...] = ()):
    user = User.objects.create_user("staff", "staff@example.org", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client.force_login(user)
    return client


@pytest.fixture
def failed_email(next_cohort, clock):
    learner = EnrollmentFactory(cohort=next_cohort, learner__email="grace@example.org").learner
    return LearnerEmail.objects.create(
        learner=learner, template="manage_link", status=LearnerEmail.Status.FAILED, attempts=8, next_attempt_at=clock.now(),
        last_error="gave up after 8 attempts: AnymailAPIError: Service Unavailable",
    )


def test_organizers_see_each_email_with_its_address_status_and_error(client, failed_email):
    page = staff(client, role=ORGANIZER).get(reverse(CHANGELIST)).content.decode()

    assert "grace@example.org" in page and "manage_link" in page and "Failed" in page
    assert "gave up after 8 attempts" in page
    detail = client.get(reverse("admin:signups_learneremail_change", args=[failed_email.pk])).content.decode()
    assert "grace@example.org" in detail and "Service Unavailable" in detail
    assert "confirm_url" not in detail and "List-Unsubscribe" not in detail  # the secret links stay out
    # Searched exactly, on indexed columns: an address, or an email's id.
    assert client.get(reverse(CHANGELIST), {"q": " Grace@Example.org "}).context["cl"].result_count == 1
    assert client.get(reverse(CHANGELIST), {"q": "grace@"}).context["cl"].result_count == 0
    assert client.get(reverse(CHANGELIST), {"q": str(failed_email.pk)}).context["cl"].result_count == 1


def test_without_the_right_to_see_learners_the_address_is_not_shown(client, failed_email):
    page = staff(client, permissions=("signups.view_learneremail",)).get(reverse(CHANGELIST)).content.decode()

    assert "Failed" in page and f"learner #{failed_email.learner_id}" in page
    assert "grace@example.org" not in page
    detail = client.get(reverse("admin:signups_learneremail_change", args=[failed_email.pk])).content.decode()
    assert "grace@example.org" not in detail
    # Nor can an address be found by searching for it.
    assert client.get(reverse(CHANGELIST), {"q": "grace@example.org"}).context["cl"].result_count == 0


def test_course_editors_may_not_see_learners_emails(client, failed_email):
    assert staff(client, role=COURSE_EDITOR).get(reverse(CHANGELIST)).status_code == 403


def test_the_learners_page_lists_their_recent_emails_for_those_who_may_read_them(client, failed_email):
    url = reverse("admin:signups_learner_change", args=[failed_email.learner_id])

    page = staff(client, role=ORGANIZER).get(url).content.decode()
    assert "recent emails" in page.lower() and "manage_link" in page and "gave up after 8 attempts" in page

    client.logout()
    User.objects.all().delete()
    page = staff(client, permissions=("signups.view_learner",)).get(url).content.decode()
    assert "gave up after 8 attempts" not in page


def test_organizers_send_a_failed_email_again(client, failed_email, clock):
    response = staff(client, role=ORGANIZER).post(
        reverse(CHANGELIST), {"action": "send_again", ACTION_CHECKBOX_NAME: [failed_email.pk]}, follow=True
    )

    assert "1 failed email will be sent again now; skipped 0" in response.content.decode()
    failed_email.refresh_from_db()
    assert (failed_email.status, failed_email.attempts) == ("sent", 1)
    [message] = mail.outbox
    assert message.to == ["grace@example.org"]


def test_sending_again_leaves_emails_that_did_not_fail(client, failed_email, clock):
    sent = LearnerEmail.objects.create(
        learner=failed_email.learner, template="manage_link", status=LearnerEmail.Status.SENT, attempts=1,
        next_attempt_at=clock.now(), sent_at=clock.now(),
    )
    response = staff(client, role=ORGANIZER).post(
        reverse(CHANGELIST), {"action": "send_again", ACTION_CHECKBOX_NAME: [sent.pk]}, follow=True
    )

    assert "0 failed emails will be sent again now; skipped 1" in response.content.decode()
    assert not mail.outbox


def test_without_the_permission_the_action_is_not_offered_and_changes_nothing(client, failed_email):
    staff(client, permissions=("signups.view_learneremail", "signups.view_learner"))
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="send_again"' not in page

    client.post(reverse(CHANGELIST), {"action": "send_again", ACTION_CHECKBOX_NAME: [failed_email.pk]})

    failed_email.refresh_from_db()
    assert failed_email.status == "failed" and not mail.outbox


def test_the_outbox_is_read_only_even_for_superusers(admin_client, failed_email):
    assert admin_client.get(reverse("admin:signups_learneremail_add")).status_code == 403
    detail = admin_client.get(reverse("admin:signups_learneremail_change", args=[failed_email.pk])).content.decode()
    assert 'name="_save"' not in detail
    assert admin_client.post(reverse("admin:signups_learneremail_delete", args=[failed_email.pk])).status_code == 403
    assert LearnerEmail.objects.filter(pk=failed_email.pk).exists()
