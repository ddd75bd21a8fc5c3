"""The local SMTP listener (manage.py group_mail_smtpd): its server started in this process on a
free port, spoken to with smtplib as a member's mail program would."""

import smtplib
import socket

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from groupmail.models import InboundMessage
from groupmail.smtp import smtp_listener_start
from groupmail.tests.conftest import IN_WEEK_1
from groupmail.tests.messages import raw_message
from scheduler.models import Delivery, EmailKind

# The listener stores from a thread of its own: the test's data must be committed for it to see.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.clock(IN_WEEK_1)]

GROUP_ADDRESS = "winter-3@groups.example.org"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def listener(group_mail):
    """The listener on 127.0.0.1 and a free port; yields (host, port)."""
    group_mail.GROUP_MAIL_SMTP_HOST, group_mail.GROUP_MAIL_SMTP_PORT = "127.0.0.1", _free_port()
    controller = smtp_listener_start(group_mail.GROUP_MAIL_SMTP_HOST, group_mail.GROUP_MAIL_SMTP_PORT)
    yield group_mail.GROUP_MAIL_SMTP_HOST, group_mail.GROUP_MAIL_SMTP_PORT
    controller.stop()


def test_a_members_message_sent_by_smtp_is_relayed_to_the_other_members(listener, study_group):
    with smtplib.SMTP(*listener, timeout=10) as smtp:
        refused = smtp.sendmail("ada@example.org", [GROUP_ADDRESS], raw_message(subject="Sent by SMTP"))

    assert refused == {}
    stored = InboundMessage.objects.get()
    assert (stored.esp, stored.status) == ("smtp", InboundMessage.Status.RELAYED)
    assert (stored.envelope_sender, stored.envelope_recipients) == ("ada@example.org", [GROUP_ADDRESS])
    rows = Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE)
    assert sorted(rows.values_list("learner__email", flat=True)) == ["bob@example.org", "cy@example.org", "dee@example.org"]
    # Committed for real, so the copies were queued and sent (eagerly, in the listener's thread).
    assert set(rows.values_list("status", flat=True)) == {Delivery.Status.SENT}
    assert sorted(message.to[0] for message in mail.outbox) == ["bob@example.org", "cy@example.org", "dee@example.org"]
    assert all(message.subject == "[Group 3] Sent by SMTP" for message in mail.outbox)


def test_a_recipient_outside_the_group_domain_is_refused_at_rcpt(listener, study_group):
    with smtplib.SMTP(*listener, timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("ada@example.org")
        code, answer = smtp.rcpt("someone@example.net")
        smtp.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("ada@example.org", ["someone@example.net"], raw_message(to="someone@example.net"))

    assert code == 550 and b"not a group address" in answer
    assert not InboundMessage.objects.exists()


def test_a_bounce_keeps_its_empty_envelope_sender_and_is_refused(listener, study_group):
    with smtplib.SMTP(*listener, timeout=10) as smtp:
        smtp.sendmail("", [GROUP_ADDRESS], raw_message(sender="MAILER-DAEMON <mailer-daemon@example.org>"))

    stored = InboundMessage.objects.get()
    assert (stored.envelope_sender, stored.refusal) == ("<>", InboundMessage.Refusal.AUTOMATED)


def test_a_message_over_the_size_limit_is_refused_with_552(listener, group_mail, study_group):
    group_mail.GROUP_MAIL_MAX_MESSAGE_BYTES = 1024 * 1024  # the listener was started with this limit
    big = raw_message(attachments=[("big.bin", b"x" * (1024 * 1024), "application/octet-stream")])

    with smtplib.SMTP(*listener, timeout=10) as smtp, pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
        smtp.sendmail("ada@example.org", [GROUP_ADDRESS], big)

    assert refused.value.smtp_code == 552
    assert not InboundMessage.objects.exists()


def test_the_command_refuses_to_run_with_group_mail_off(settings):
    settings.GROUP_MAIL_DOMAIN = ""

    with pytest.raises(CommandError, match="GROUP_MAIL_DOMAIN is not set"):
        call_command("group_mail_smtpd")
