"""Organizers see what was sent per week on the cohort's page and pull the scheduler's levers."""

import datetime

import pytest
from anymail.exceptions import AnymailRecipientsRefused
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from scheduler.models import Delivery, EmailKind
from scheduler.tests.helpers import BEFORE_START, START, at, learner_in, provider_error, run_pass

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]


def test_the_cohort_page_shows_each_week_and_the_failed_rows(admin_client, cohort, provider):
    learner_in(cohort, email="ok@example.org", learner__confirmed_at=at(START, 0) - datetime.timedelta(days=10))
    learner_in(cohort, email="bad@example.org", learner__confirmed_at=at(START, 0) - datetime.timedelta(days=10))
    provider["bad@example.org"] = [AnymailRecipientsRefused("Mailbox does not exist")]
    run_pass(at(START, 10))

    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[cohort.pk])).content.decode()

    assert "Emails sent" in page
    assert "<td>Week 1</td><td>2</td><td>1</td><td>1</td><td>0</td><td>0</td><td>0</td>" in page
    assert "bad@example.org" in page and "Mailbox does not exist" in page


def test_pause_and_resume_sending(admin_client, cohort):
    url = reverse("admin:cohorts_cohort_changelist")
    admin_client.post(url, {"action": "pause_sending", ACTION_CHECKBOX_NAME: [cohort.pk]})
    cohort.refresh_from_db()
    assert cohort.sending_paused
    assert "Sending is paused" in admin_client.get(reverse("admin:cohorts_cohort_change", args=[cohort.pk])).content.decode()
    admin_client.post(url, {"action": "resume_sending", ACTION_CHECKBOX_NAME: [cohort.pk]})
    cohort.refresh_from_db()
    assert not cohort.sending_paused


def test_a_fault_on_our_side_pauses_the_cohort_and_its_page_says_why(admin_client, cohort, provider):
    learner_in(cohort, email="ada@example.org", learner__confirmed_at=at(START, 0) - datetime.timedelta(days=10))
    provider["ada@example.org"] = [provider_error(401, "Invalid API key")]
    run_pass(at(START, 10))

    page = admin_client.get(reverse("admin:cohorts_cohort_change", args=[cohort.pk])).content.decode()

    assert "Sending is paused for this cohort" in page and "Invalid API key" in page
    assert "Resume sending" in page
    health = admin_client.get("/healthz").json()
    assert health["deliveries"]["ok"] is False
    assert health["deliveries"]["paused_by_fault"] == [cohort.slug]
    assert "Invalid API key" not in str(health)  # public: the provider's words stay in the admin


def test_resend_failed_and_send_a_week_now(admin_client, cohort, provider):
    learner_in(cohort, email="flaky@example.org", learner__confirmed_at=at(START, 0) - datetime.timedelta(days=10))
    provider["flaky@example.org"] = [provider_error(503, "Service Unavailable")] * 6
    for hours in range(0, 200, 8):
        run_pass(at(START, 10) + datetime.timedelta(hours=hours))  # every retry fails: gave up
    row = Delivery.objects.get(kind=EmailKind.WEEK, week_number=1)
    assert row.status == "failed"
    url = reverse("admin:cohorts_cohort_changelist")

    ask = admin_client.post(url, {"action": "resend_failed", ACTION_CHECKBOX_NAME: [cohort.pk]})
    assert "Send again" in ask.content.decode()
    done = admin_client.post(url, {"action": "resend_failed", ACTION_CHECKBOX_NAME: [cohort.pk], "apply": "1", "email": "week:1"}, follow=True)
    assert "1 failed email will be sent again" in done.content.decode()
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 0)

    sent_now = admin_client.post(url, {"action": "send_week_now", ACTION_CHECKBOX_NAME: [cohort.pk], "apply": "1", "email": "week:5"}, follow=True)
    assert "Week 5 goes to 1 learner" in sent_now.content.decode()
    assert Delivery.objects.get(kind=EmailKind.WEEK, week_number=5).status == "pending"


def test_the_ledger_is_read_only_in_admin(admin_client, cohort):
    learner_in(cohort)
    run_pass(at(START, 10))
    assert admin_client.get(reverse("admin:scheduler_delivery_changelist")).status_code == 200
    row = Delivery.objects.first()
    response = admin_client.post(reverse("admin:scheduler_delivery_change", args=[row.pk]), {"status": "pending"})
    assert response.status_code == 403
