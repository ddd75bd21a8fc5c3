from io import StringIO

import pytest
from django.core.management import call_command

from scheduler.models import EmailKind, EmailTemplate

pytestmark = pytest.mark.django_db


def test_the_command_says_what_it_did_and_a_second_run_changes_nothing():
    first, second = StringIO(), StringIO()
    call_command("load_demo", stdout=first)
    versions = list(EmailTemplate.objects.values_list("pk", "current_version_id"))
    call_command("load_demo", stdout=second)

    assert "'A Gentle Introduction to Python': created" in first.getvalue()
    assert first.getvalue().count("created, starts") == 2
    assert "Emails: 11 default templates added" in first.getvalue()
    assert second.getvalue().count("already there, kept") == 3
    assert "Emails: all there, kept" in second.getvalue()
    assert list(EmailTemplate.objects.values_list("pk", "current_version_id")) == versions


def test_every_week_and_every_other_email_has_a_default():
    call_command("load_demo", stdout=StringIO())

    weeks = EmailTemplate.objects.filter(kind=EmailKind.WEEK, cohort=None).order_by("week_number")
    assert [template.week_number for template in weeks] == list(range(1, 9))
    assert {template.kind for template in EmailTemplate.objects.exclude(kind=EmailKind.WEEK)} == {
        EmailKind.WELCOME, EmailKind.GROUP_INTRO, EmailKind.COURSE_END,
    }
    assert all(template.current_version is not None for template in EmailTemplate.objects.all())
    assert weeks.get(week_number=6).current_version.subject == "Week 6: let the projects begin!"
