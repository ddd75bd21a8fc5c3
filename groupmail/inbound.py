"""Receiving members' messages: the one door every way in uses (the providers' inbound webhooks,
groupmail/webhooks.py, and the local SMTP listener, management command group_mail_smtpd).

A web request only stores the message and queues its screening (groupmail/services.py): no
lookup, no parsing beyond the headers, nothing sent. Stored once per dedupe key, so a provider
that posts the same message again (a retry after a timeout) changes nothing.
"""

import datetime
import hashlib
import logging
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from django.conf import settings
from django.db import IntegrityError, transaction

from groupmail.models import InboundMessage
from mooc.queueing import task_queue_once, task_started

logger = logging.getLogger(__name__)

# The envelope sender of a bounce (RFC 5321's null reverse-path), as stored.
NULL_SENDER = "<>"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def dedupe_key(raw: bytes, envelope_recipients: list[str], event_id: str = "") -> str:
    """What makes two deliveries of a message the same one: its Message-ID and envelope
    recipients (whichever way it came in), else the provider's event id, else its bytes."""
    headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
    try:
        message_id = str(headers.get("Message-ID", "") or "").strip()
    except (TypeError, ValueError):  # a header the parser cannot read: the bytes decide
        message_id = ""
    if message_id:
        return "mid:" + _digest(message_id, *sorted(address.lower() for address in envelope_recipients))
    if event_id:
        return "event:" + _digest(event_id)
    return "raw:" + hashlib.sha256(raw).hexdigest()


def _headers_only(raw: bytes) -> bytes:
    """The header block of a message: what a refusal of a too-big message still needs."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = raw.find(separator)
        if end != -1:
            return raw[: end + len(separator)]
    return raw[:64 * 1024]


def inbound_receive(
    raw: bytes, *, esp: str, now: datetime.datetime, envelope_sender: str | None = None,
    envelope_recipients: list[str] | None = None, event_id: str = "",
) -> InboundMessage | None:
    """Store one received message and queue its screening; None if it was stored before.

    `envelope_sender` is the SMTP MAIL FROM where the way in knows it (NULL_SENDER for a bounce's
    empty one), `envelope_recipients` the RCPT TOs (else the screening reads To and Cc). A
    message over GROUP_MAIL_MAX_MESSAGE_BYTES keeps only its headers: enough to tell its sender.
    """
    recipients = [address.strip() for address in envelope_recipients or [] if address and address.strip()]
    key = dedupe_key(raw, recipients, event_id)
    size = len(raw)
    if size > settings.GROUP_MAIL_MAX_MESSAGE_BYTES:
        raw = _headers_only(raw)
    try:
        with transaction.atomic():
            inbound = InboundMessage.objects.create(
                esp=esp, dedupe_key=key, raw=raw, size=size, envelope_sender=(envelope_sender or "")[:254],
                envelope_recipients=recipients[:100], received_at=now,
            )
    except IntegrityError:
        logger.info("Inbound message from %s received again (%s): already stored", esp, key[:16])
        return None
    inbound_screen_soon()
    return inbound


# At most one screening task is queued per this many seconds, however many messages arrive:
# the task screens every message waiting, in batches (groupmail/services.py), and a burst of
# messages is screened by the task already queued. The mark is cleared when a task starts, so a
# message arriving while one runs queues the next.
SCREEN_QUEUED_KEY = "groupmail:screen-queued"
SCREEN_DEBOUNCE_SECONDS = 10


def inbound_screen_soon() -> None:
    """Queue the screening once the caller's transaction commits, unless a task is queued and
    not started yet (mooc/queueing.py). An unreachable broker or cache loses nothing: beat's
    group-mail-screen job screens what is still waiting within a minute."""
    from groupmail.tasks import inbound_screen_due

    transaction.on_commit(lambda: task_queue_once(
        SCREEN_QUEUED_KEY, SCREEN_DEBOUNCE_SECONDS, inbound_screen_due, queue=settings.GROUP_MAIL_QUEUE, what="Group mail screening",
    ))


def inbound_screen_started() -> None:
    """A screening task started: the next message to arrive queues another."""
    task_started(SCREEN_QUEUED_KEY, "Group mail screening")
