"""The cohort's page as the organizer's desk: the actions as buttons, each only with its
permission and checked again when posted; counts that lead to the learners they count."""

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from cohorts.tests.factories import CohortFactory
from mooc.permissions import ORGANIZER, VIEWER
from signups.models import Enrollment
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


def staff(client, role):
    user = User.objects.create_user(f"{role.lower().replace(' ', '')}", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return user


def buttons(page: str) -> list[str]:
    if 'id="cohort-actions"' not in page:
        return []
    part = page[page.index('id="cohort-actions"'):]
    part = part[: part.index("</fieldset>")]
    return [chunk.split("\"", 1)[0] for chunk in part.split('form="cohort-action-')[1:]]


def test_an_organizer_gets_every_action_as_a_button_and_a_viewer_none(client):
    cohort = CohortFactory()
    url = reverse("admin:cohorts_cohort_change", args=[cohort.pk])
    staff(client, ORGANIZER)
    shown = buttons(client.get(url).content.decode())
    assert {"start_next_round", "close_signup", "pause_sending", "form_groups", "reform_groups", "send_week_now", "resend_failed"} <= set(shown)
    assert "resume_sending" not in shown  # sending is not paused

    client.logout()
    staff(client, VIEWER)
    assert buttons(client.get(url).content.decode()) == []


def test_a_button_runs_the_action_and_comes_back_to_the_cohort(client, clock):
    cohort = CohortFactory()
    staff(client, ORGANIZER)
    response = client.post(reverse("admin:cohorts_cohort_changelist"),
                           {"action": "pause_sending", "_selected_action": cohort.pk, "_from_object_page": "1"})

    assert response.status_code == 302 and response["Location"] == reverse("admin:cohorts_cohort_change", args=[cohort.pk])
    cohort.refresh_from_db()
    assert cohort.sending_paused


def test_a_post_without_the_permission_changes_nothing(client):
    cohort = CohortFactory()
    staff(client, VIEWER)
    client.post(reverse("admin:cohorts_cohort_changelist"), {"action": "pause_sending", "_selected_action": cohort.pk, "_from_object_page": "1"})

    cohort.refresh_from_db()
    assert not cohort.sending_paused


def test_counts_link_to_the_learners_they_count_and_the_list_says_when_they_signed_up(client):
    cohort = CohortFactory()
    active = EnrollmentFactory(cohort=cohort)
    EnrollmentFactory(cohort=cohort, status=Enrollment.Status.PAUSED)
    staff(client, ORGANIZER)
    page = client.get(reverse("admin:cohorts_cohort_change", args=[cohort.pk])).content.decode()

    link = reverse("admin:signups_learner_changelist") + f"?enrollment={cohort.slug}%3Aactive"
    assert f'<a href="{link}">Active: 1</a>' in page
    listed = client.get(link).content.decode()
    assert active.learner.email in listed
    assert listed.count("field-email") == 1
    assert "signed up (utc)" in listed.lower()
