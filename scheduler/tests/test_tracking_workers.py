"""Tracking events with real processes: a webhook's request commits the events, a real Celery
worker on Redis applies them (PostgreSQL in CI)."""

import datetime
import json

import pytest
from django.urls import reverse

from cohorts.models import Cohort
from mooc.testing.fixtures import wait_for
from scheduler.ledger import Reason, Status
from scheduler.models import Delivery, EmailKind
from signups.models import Learner, Suppression
from scheduler.tests.webhook_requests import AUTH, SECRET
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]



def test_a_worker_applies_what_the_webhook_stored(client, settings, clock, celery_worker_queue):
    from cohorts.services import DEMO_COURSE_FILE, course_create_from_definition, course_definition_read

    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    settings.TRACKING_EVENTS_QUEUE = celery_worker_queue
    settings.TRACKING_APPLY_GATHER_MS = 200  # production's: the request's thread leaves the asking to the gatherer's
    course, _ = course_create_from_definition(course_definition_read(DEMO_COURSE_FILE))
    cohort = Cohort.objects.create(course=course, name="Now", slug="now", start_date=clock.today(),
                                   signup_opens_on=clock.today() - datetime.timedelta(weeks=2), signup_closes_on=clock.today())
    rows = []
    for number, (status, reason) in enumerate([(Status.SENT, Reason.NONE), (Status.FAILED, Reason.AMBIGUOUS)]):
        enrollment = EnrollmentFactory(cohort=cohort, learner__email=f"learner{number}@example.org")
        rows.append(Delivery.objects.create(
            learner=enrollment.learner, cohort=cohort, kind=EmailKind.WEEK, week_number=1, status=status, reason_code=reason,
            due_at=clock.now(), provider_call_at=clock.now(), provider_message_id=f"message-{number}" if status == Status.SENT else "",
        ))
    sent, ambiguous = rows

    def event(row, record_type, **fields):
        return {
            "RecordType": record_type, "MessageID": row.provider_message_id or "lost", "Recipient": row.learner.email,
            "Email": row.learner.email, "Metadata": {"delivery": str(row.pk), "learner": str(row.learner.public_id)}, **fields,
        }

    url = reverse("postmark_tracking_webhook")
    for payload in [
        event(ambiguous, "Delivery", DeliveredAt="2026-11-21T10:00:00Z"),
        event(sent, "Bounce", ID=991, Type="HardBounce", TypeCode=1, BouncedAt="2026-11-21T10:00:01Z"),
    ]:
        assert client.post(url, data=json.dumps(payload), content_type="application/json", **AUTH).status_code == 200

    assert wait_for(lambda: Delivery.objects.get(pk=ambiguous.pk).status == Status.SENT, timeout=60), "the worker applied nothing"
    assert Delivery.objects.get(pk=ambiguous.pk).reason_code == Reason.PROVIDER_CONFIRMED
    assert wait_for(lambda: Learner.objects.get(pk=sent.learner_id).unsubscribed_reason == Suppression.Reason.BOUNCED, timeout=60)
    assert Delivery.objects.get(pk=sent.pk).bounced_at is not None
