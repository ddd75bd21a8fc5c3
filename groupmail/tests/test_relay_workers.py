"""Group mail with real processes: what the way in commits, a real Celery worker on Redis
screens, relays through the ledger and sends (PostgreSQL in CI)."""

import email
import email.policy
import uuid

import pytest

from groupmail.inbound import inbound_receive
from groupmail.models import InboundMessage
from groupmail.tests.conftest import DOMAIN
from groupmail.tests.messages import raw_message
from mooc.testing.fixtures import wait_for
from scheduler.models import Delivery, EmailKind

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def sent_mail(outbox) -> list:
    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in sorted(outbox.glob("*.eml"))]


def test_a_worker_relays_a_members_message_and_tells_a_stranger(study_group, celery_workers, settings, tmp_path, clock):
    queue = f"test-{uuid.uuid4().hex[:12]}"
    outbox = tmp_path / "outbox"
    settings.GROUP_MAIL_QUEUE = queue
    celery_workers(
        queue, GROUP_MAIL_DOMAIN=DOMAIN, GROUP_MAIL_QUEUE=queue, DELIVERY_QUEUE=queue, TRANSACTIONAL_QUEUE=queue,
        EMAIL_BACKEND="mooc.testing.providers.FileProviderBackend", EMAIL_OUTBOX_DIR=str(outbox), EMAIL_SEND_RATE_PER_SECOND="0",
    )

    inbound_receive(raw_message(), esp="test", now=clock.now())
    inbound_receive(raw_message(sender="Eve <eve@example.net>"), esp="test", now=clock.now())

    assert wait_for(lambda: len(sent_mail(outbox)) == 4, timeout=60), f"sent: {[m['To'] for m in sent_mail(outbox)]}"
    by_recipient = {str(message["To"]): message for message in sent_mail(outbox)}
    assert sorted(by_recipient) == ["bob@example.org", "cy@example.org", "dee@example.org", "eve@example.net"]
    assert str(by_recipient["cy@example.org"]["List-Id"]) == f"Group 3 <winter-3.{DOMAIN}>"
    assert str(by_recipient["eve@example.net"]["Auto-Submitted"]) == "auto-replied"
    rows = Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE)
    assert sorted(rows.values_list("status", flat=True)) == [Delivery.Status.SENT] * 3
    assert sorted(InboundMessage.objects.values_list("status", flat=True)) == ["refused", "relayed"]
