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


@pytest.mark.clock("2026-11-25T15:00:00Z")
def test_with_history_the_running_round_has_learners_emails_and_events_once(settings, tmp_path, monkeypatch):
    from scheduler import demo
    from scheduler.models import Delivery, TrackingEvent
    from scheduler.outbox import OUTBOX_BACKEND

    settings.EMAIL_BACKEND, settings.EMAIL_OUTBOX_DIR, settings.EMAIL_SEND_RATE_PER_SECOND = OUTBOX_BACKEND, tmp_path, 0
    monkeypatch.setattr(demo, "DEMO_LEARNERS", 12)
    first = StringIO()
    call_command("load_demo", "--with-history", stdout=first)

    assert "History of gentle-python-round-1: 12 learners" in first.getvalue()
    weeks = set(Delivery.objects.filter(kind=EmailKind.WEEK, status="sent").values_list("week_number", flat=True))
    assert weeks == {1, 2}  # the round started two weeks ago
    assert not Delivery.objects.filter(cohort__slug="gentle-python-round-2").exists()
    assert Delivery.objects.filter(delivered_at__isnull=False).exists() and Delivery.objects.filter(opened_at__isnull=False).exists()
    events = TrackingEvent.objects.count()
    assert events and not TrackingEvent.objects.filter(applied_at__isnull=True).exists()

    again = StringIO()
    call_command("load_demo", "--with-history", stdout=again)
    call_command("simulate_events", stdout=again)  # the history's events are the command's: nothing new
    assert "it has learners already, kept" in again.getvalue() and "new: 0" in again.getvalue()
    assert TrackingEvent.objects.count() == events


def test_without_the_outbox_no_history_is_made(settings):
    from signups.models import Enrollment

    settings.EMAIL_BACKEND = "mooc.testing.providers.ScriptedAnymailBackend"
    output = StringIO()
    call_command("load_demo", "--with-history", stdout=output)
    assert "History of gentle-python-round-1: not made" in output.getvalue()
    assert not Enrollment.objects.exists()
