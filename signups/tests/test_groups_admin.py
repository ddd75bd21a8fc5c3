"""Organizers form and re-form groups from the cohort's admin page, the command and the beat job."""

import datetime
import zoneinfo
from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import CommandError, call_command
from django.urls import reverse

from cohorts.models import StudyGroup
from signups.models import Enrollment
from signups.services import enrollment_leave
from signups.tasks import groups_form_due
from signups.tests.factories import EnrollmentFactory

pytestmark = pytest.mark.django_db


def enroll(cohort, count, timezone_name="Europe/Lisbon", **fields):
    return EnrollmentFactory.create_batch(count, cohort=cohort, learner__timezone=timezone_name, **fields)


def test_form_groups_from_the_admin_then_the_page_shows_them(admin_client, next_cohort):
    enroll(next_cohort, 12, learner__first_name="Ada")
    enroll(next_cohort, 3, status="pending", learner__confirmed_at=None)
    changelist = reverse("admin:cohorts_cohort_changelist")

    response = admin_client.post(changelist, {"action": "form_groups", ACTION_CHECKBOX_NAME: [next_cohort.pk]}, follow=True)

    assert "1 groups of 12 to 12; 100% within 2 hours; 0 left without a group." in response.content.decode()
    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[next_cohort.pk])).content.decode()
    assert "Learners and study groups" in page
    assert "Active: 12" in page and "Waiting for confirmation: 3" in page
    # Lisbon's offset on the day the round starts: UTC+0 in winter, UTC+1 in summer time.
    lisbon_at_start = datetime.datetime.combine(next_cohort.start_date, datetime.time(12), tzinfo=zoneinfo.ZoneInfo("Europe/Lisbon"))
    assert f"UTC+{lisbon_at_start.utcoffset() // datetime.timedelta(hours=1)}: 12" in page
    assert "Group 1" in page and "Ada (Europe/Lisbon)" in page
    assert "Next week due:" in page

    again = admin_client.post(changelist, {"action": "form_groups", ACTION_CHECKBOX_NAME: [next_cohort.pk]}, follow=True)
    assert "has groups already" in again.content.decode()


def test_reform_from_the_admin(admin_client, next_cohort, clock):
    enroll(next_cohort, 20)
    call_command("form_groups", next_cohort.slug, stdout=StringIO())
    second = StudyGroup.objects.get(number=2)
    for enrollment in list(Enrollment.objects.filter(group=second))[:6]:
        enrollment_leave(enrollment, now=clock.now())

    response = admin_client.post(
        reverse("admin:cohorts_cohort_changelist"), {"action": "reform_groups", ACTION_CHECKBOX_NAME: [next_cohort.pk]}, follow=True
    )

    assert "moved 4 learners; groups merged away: Group 2." in response.content.decode()


def test_the_command_prints_the_quality_report(next_cohort):
    enroll(next_cohort, 15, "America/Chicago")
    enroll(next_cohort, 15, "Asia/Kolkata")
    output = StringIO()

    call_command("form_groups", next_cohort.slug, "--seed", "3", stdout=output)

    text = output.getvalue()
    assert "Group 1" in text and "Group 2" in text
    # 15 in a zone is more than the largest group (14): two groups each, none mixing the zones.
    assert "4 groups for 30 learners; sizes 6-9; 100.0% of groups within 2 hours; 0 left without a group." in text


def test_the_command_refuses_to_form_twice_or_without_learners(next_cohort, later_cohort):
    enroll(next_cohort, 8)
    call_command("form_groups", next_cohort.slug, stdout=StringIO())
    with pytest.raises(CommandError, match="has groups already. Use --reform"):
        call_command("form_groups", next_cohort.slug, stdout=StringIO())
    with pytest.raises(CommandError, match="no confirmed learner who wants a group: nothing changed"):
        call_command("form_groups", later_cohort.slug, stdout=StringIO())
    with pytest.raises(CommandError, match="no cohort with the slug"):
        call_command("form_groups", "nope", stdout=StringIO())


def test_the_beat_job_forms_groups_on_the_formation_date_once(next_cohort, later_cohort, today):
    next_cohort.groups_form_on = today
    next_cohort.save()
    enroll(next_cohort, 10)
    enroll(later_cohort, 10)  # its day has not come

    groups_form_due.apply()
    groups_form_due.apply()

    assert StudyGroup.objects.filter(cohort=next_cohort).count() == 1
    assert not StudyGroup.objects.filter(cohort=later_cohort).exists()


def test_by_default_groups_form_the_day_before_the_start(next_cohort, today):
    next_cohort.start_date = today + datetime.timedelta(days=1)
    next_cohort.save()
    enroll(next_cohort, 7)

    groups_form_due.apply()

    assert StudyGroup.objects.filter(cohort=next_cohort).count() == 1
