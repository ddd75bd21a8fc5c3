"""Each staff role, logged in through the real admin login, against every action and custom view.

An action a role may not run is not offered to it, and posting it anyway changes nothing; a
custom view it may not use answers 403. The roles themselves come from the data migration.
"""

import datetime
from dataclasses import dataclass
from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from cohorts.models import Cohort, StudyGroup
from cohorts.tests.factories import CohortFactory
from mooc.permissions import COURSE_EDITOR, ORGANIZER, ROLES, VIEWER, roles_sync
from scheduler.models import Delivery, EmailKind, EmailTemplate
from scheduler.services import template_version_save
from signups.import_jobs import learner_import_apply, learner_import_preview
from signups.models import Enrollment, Learner, LearnerEmail, LearnerImport, Suppression
from signups.services import learner_links
from signups.suppressions import learner_mail_stop
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a long and careful passphrase"
NO_ROLE = "no role"
EVERY_ROLE = [ORGANIZER, COURSE_EDITOR, VIEWER, NO_ROLE]


def log_in(role: str) -> Client:
    """A staff member with only this role, logged in through the admin's own login form."""
    user = User.objects.create_user(f"staff-{role.replace(' ', '-')}", f"{role.replace(' ', '')}@staff.example", PASSWORD, is_staff=True)
    if role != NO_ROLE:
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    response = client.post(reverse("admin:login"), {"username": user.username, "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302, "the login was refused"
    return client


@pytest.fixture
def course_with_learners(clock):
    """A course, a round with twelve confirmed learners (one with a failed week 1), a second
    round to move to, and one learner still to confirm."""
    cohort = CohortFactory(name="Round 2")
    other = CohortFactory(course=cohort.course, start_date=cohort.start_date + datetime.timedelta(weeks=4))
    learners = EnrollmentFactory.create_batch(12, cohort=cohort, learner__first_name="Hedy")
    Delivery.objects.create(
        learner=learners[0].learner, cohort=cohort, kind=EmailKind.WEEK, week_number=1, due_at=clock.now(),
        status=Delivery.Status.FAILED, reason="refused by the test",
    )
    unconfirmed = EnrollmentFactory(cohort=cohort, status=Enrollment.Status.PENDING, learner__confirmed_at=None).learner
    failed_email = LearnerEmail.objects.create(
        learner=learners[2].learner, template="manage_link", status=LearnerEmail.Status.FAILED, next_attempt_at=clock.now(),
    )
    # In the other round (this one's counts stay twelve): her address bounced, and she fixed it.
    bounced = EnrollmentFactory(cohort=other).learner
    learner_mail_stop(bounced.pk, Suppression.Reason.BOUNCED, clock.now() - datetime.timedelta(days=1))
    Learner.objects.filter(pk=bounced.pk).update(address_fixed_at=clock.now())
    return {
        "cohort": cohort, "other": other, "learners": learners, "unconfirmed": unconfirmed, "failed_email": failed_email,
        "bounced": bounced,
    }


@dataclass
class Action:
    model: str  # the changelist the action is on
    name: str
    extra: dict  # the intermediate page's answers
    selected: str  # which object it acts on: a key of course_with_learners
    effect: object  # (data, response) -> whether it did its work


def _learner_of(data):
    return data["learners"][1].learner


ACTIONS = [
    Action("cohorts/cohort", "close_signup", {}, "cohort", lambda data, _: Cohort.objects.get(pk=data["cohort"].pk).signup_closes_on != data["cohort"].signup_closes_on),
    Action("cohorts/cohort", "pause_sending", {}, "cohort", lambda data, _: Cohort.objects.get(pk=data["cohort"].pk).sending_paused),
    Action("cohorts/cohort", "start_next_round", {"apply": "1", "weeks_later": "8", "previewed": "8"}, "cohort", lambda data, _: Cohort.objects.count() == 3),
    Action("cohorts/cohort", "send_week_now", {"apply": "1", "email": "week:2"}, "cohort",
           lambda data, _: Delivery.objects.filter(week_number=2).count() == 12),
    Action("cohorts/cohort", "resend_failed", {"apply": "1", "email": "week:1"}, "cohort",
           lambda data, _: not Delivery.objects.filter(status=Delivery.Status.FAILED).exists()),
    Action("cohorts/cohort", "form_groups", {}, "cohort", lambda data, _: StudyGroup.objects.exists()),
    Action("cohorts/cohort", "reform_groups", {}, "cohort", lambda data, response: "moved 0 learners" in response.content.decode()),
    Action("signups/learner", "unsubscribe", {}, "learner", lambda data, _: Learner.objects.get(pk=_learner_of(data).pk).unsubscribed_at is not None),
    Action("signups/learner", "move_to_cohort", {"apply": "1", "cohort": "other"}, "learner",
           lambda data, _: Enrollment.objects.filter(learner=_learner_of(data), cohort=data["other"]).exists()),
    Action("signups/learner", "resend_confirmation", {}, "unconfirmed", lambda data, _: len(mail.outbox) == 1),
    Action("signups/learner", "restart_mail", {}, "bounced", lambda data, _: not Learner.objects.get(pk=data["bounced"].pk).is_unsubscribed),
    Action("signups/learneremail", "send_again", {}, "failed_email", lambda data, _: len(mail.outbox) == 1),
]


def _target(data, action: Action):
    return {"cohort": data["cohort"], "learner": _learner_of(data), "unconfirmed": data["unconfirmed"],
            "failed_email": data["failed_email"], "bounced": data["bounced"]}[action.selected]


def _offered(client, action: Action):
    """The changelist's status and whether its action menu offers the action."""
    response = client.get(reverse(f"admin:{action.model.replace('/', '_')}_changelist"))
    return response.status_code, f'value="{action.name}"' in response.content.decode()


def test_the_migration_made_the_three_roles_with_exactly_their_permissions():
    for name, wanted in ROLES.items():
        granted = {f"{app}.{codename}" for app, codename in Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename")}
        assert granted == set(wanted), name


def test_a_role_edited_by_hand_is_put_back_in_step_with_the_code():
    viewer = Group.objects.get(name=VIEWER)
    viewer.permissions.clear()
    Group.objects.get(name=ORGANIZER).delete()

    roles_sync()

    assert viewer.permissions.count() == len(ROLES[VIEWER])
    assert Group.objects.get(name=ORGANIZER).permissions.count() == len(ROLES[ORGANIZER])


@pytest.mark.django_db(transaction=True)
def test_the_roles_come_back_after_the_database_is_emptied():
    call_command("flush", interactive=False, verbosity=0)

    assert set(Group.objects.values_list("name", flat=True)) == set(ROLES)
    assert Group.objects.get(name=VIEWER).permissions.count() == len(ROLES[VIEWER])


@pytest.mark.parametrize("action", ACTIONS, ids=lambda action: action.name)
@pytest.mark.parametrize("role", EVERY_ROLE)
def test_each_action_is_offered_to_and_run_by_organizers_only(role, action, course_with_learners):
    data = course_with_learners
    client = log_in(role)
    allowed = role == ORGANIZER

    status, offered = _offered(client, action)
    extra = {key: (data["other"].pk if value == "other" else value) for key, value in action.extra.items()}
    response = client.post(
        reverse(f"admin:{action.model.replace('/', '_')}_changelist"),
        {"action": action.name, "index": "0", ACTION_CHECKBOX_NAME: [_target(data, action).pk], **extra},
        follow=True,
    )

    assert offered is allowed
    if allowed:
        assert status == 200 and action.effect(data, response)
    else:
        # Whoever may not see the list gets 403 for it; whoever may see it is not offered the action.
        assert status == (200 if action.model == "cohorts/cohort" and role != NO_ROLE else 403)
        assert not action.effect(data, response)
        assert response.status_code in (200, 403)


def test_nothing_changes_for_a_role_without_the_action_even_selecting_everything(course_with_learners):
    client = log_in(VIEWER)
    client.post(reverse("admin:signups_learner_changelist"), {"action": "unsubscribe", "select_across": "1", "index": "0", ACTION_CHECKBOX_NAME: ["1"]})
    client.post(reverse("admin:signups_learner_changelist"), {"action": "restart_mail", "select_across": "1", "index": "0", ACTION_CHECKBOX_NAME: ["1"]})
    client.post(reverse("admin:cohorts_cohort_changelist"), {"action": "pause_sending", "select_across": "1", "index": "0", ACTION_CHECKBOX_NAME: ["1"]})

    assert list(Learner.objects.filter(unsubscribed_at__isnull=False)) == [course_with_learners["bounced"]]  # still stopped
    assert not Cohort.objects.filter(sending_paused=True).exists()


# --- Custom views ----------------------------------------------------------------------------------


@pytest.fixture
def week_one(course_with_learners):
    template = EmailTemplate.objects.create(course=course_with_learners["cohort"].course, kind=EmailKind.WEEK, week_number=1)
    template_version_save(template, "Week 1", "Hello {{ learner.first_name }}\n")
    return template


def _preview(client, template, cohort):
    return client.post(
        reverse("admin:scheduler_emailtemplate_preview"),
        {"course": template.course_id, "kind": "week", "week_number": 1, "preview_cohort": cohort.pk,
         "subject": "For {{ learner.first_name }}", "body": "[My page]({{ links.manage }})\n"},
    )


@pytest.mark.parametrize("role", EVERY_ROLE)
def test_the_template_views_check_permissions(role, week_one, course_with_learners):
    client = log_in(role)
    cohort = course_with_learners["cohort"]
    change_url = reverse("admin:scheduler_emailtemplate_change", args=[week_one.pk])
    may_read, may_edit = role != NO_ROLE, role == COURSE_EDITOR

    assert client.get(change_url).status_code == (200 if may_read else 403)
    assert _preview(client, week_one, cohort).status_code == (200 if may_read else 403)
    diff = client.get(reverse("admin:scheduler_emailtemplate_diff", args=[week_one.pk, 1]))
    assert diff.status_code == (200 if may_read else 403)

    sent = client.post(reverse("admin:scheduler_emailtemplate_test_send", args=[week_one.pk]))
    assert sent.status_code == (302 if may_edit else 403)
    assert len(mail.outbox) == (1 if may_edit else 0)

    restored = client.post(reverse("admin:scheduler_emailtemplate_restore", args=[week_one.pk, 1]))
    assert restored.status_code == (302 if may_edit else 403)
    assert week_one.versions.count() == (2 if may_edit else 1)


@pytest.mark.parametrize("role", EVERY_ROLE)
def test_the_import_pages_are_for_organizers(role, course_with_learners, clock):
    client = log_in(role)
    allowed = role == ORGANIZER
    cohort = course_with_learners["cohort"]

    assert client.get(reverse("admin:signups_learner_import")).status_code == (200 if allowed else 403)
    csv_file = SimpleUploadedFile("learners.csv", b"email,timezone,experience\nnew@learners.example,Europe/Paris,some\n")
    posted = client.post(reverse("admin:signups_learner_import"), {"cohort": cohort.pk, "csv_file": csv_file})
    assert posted.status_code == (302 if allowed else 403), posted.context and posted.context["form"].errors
    assert LearnerImport.objects.exists() is allowed

    # An import an organizer started: its page, Apply and Resume are for organizers only.
    job = LearnerImport.objects.first() or LearnerImport.objects.create(
        cohort=cohort, file_size=60, content=b"email,timezone,experience\nnew@learners.example,Europe/Paris,some\n", confirmed=False
    )
    learner_import_preview(job.pk, now=clock.now())  # as the worker does
    assert client.get(reverse("admin:signups_learner_import_job", args=[job.pk])).status_code == (200 if allowed else 403)
    applied = client.post(reverse("admin:signups_learner_import_apply", args=[job.pk]))
    assert applied.status_code == (302 if allowed else 403)
    assert client.post(reverse("admin:signups_learner_import_resume", args=[job.pk])).status_code == (302 if allowed else 403)
    learner_import_apply(job.pk, now=clock.now())
    assert Learner.objects.filter(email="new@learners.example").exists() is allowed


@pytest.mark.parametrize("role", [ORGANIZER, COURSE_EDITOR, VIEWER])
def test_a_preview_never_shows_a_real_learners_links_and_only_organizers_see_their_name(role, week_one, course_with_learners):
    client = log_in(role)
    learner = course_with_learners["learners"][0].learner

    preview = _preview(client, week_one, course_with_learners["cohort"]).json()

    everything = str(preview)
    assert learner_links(learner)["manage"] not in everything and learner.email not in everything
    assert "/me/sample-learner/" in preview["html"]
    assert ("Hedy" in preview["subject"]) is (role == ORGANIZER)


@pytest.mark.parametrize("role", [ORGANIZER, COURSE_EDITOR, VIEWER])
def test_the_cohort_page_shows_learners_only_to_those_who_may_see_them(role, course_with_learners):
    data = course_with_learners
    call_command("form_groups", data["cohort"].slug, stdout=StringIO())
    client = log_in(role)

    page = client.get(reverse("admin:cohorts_cohort_change", args=[data["cohort"].pk])).content.decode()

    assert "Active: 12" in page and "Group 1" in page  # counts and groups for everyone
    assert ("Hedy (" in page) is (role == ORGANIZER)
    assert (data["learners"][0].learner.email in page) is (role == ORGANIZER)  # the failed row's address
