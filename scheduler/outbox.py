"""The local outbox: in development every email is written to var/outbox/ as an .eml file.

`OutboxEmailBackend` is a Django email backend; `/dev/outbox/` (DEBUG only) reads the
files back and shows each message as a learner's mail client would.
"""

import email
import email.parser
import email.policy
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

MESSAGE_FILE_NAME = re.compile(r"^[0-9TZ.-]+-[0-9a-f]{12}\.eml$")
# The EMAIL_BACKEND of development: what sends to the outbox (and what the simulated events need).
OUTBOX_BACKEND = "scheduler.outbox.OutboxEmailBackend"


def outbox_dir() -> Path:
    return Path(settings.EMAIL_OUTBOX_DIR)


class OutboxEmailBackend(BaseEmailBackend):
    """Writes each message, as sent, to its own standard .eml file (RFC 5322) in the outbox."""

    def send_messages(self, email_messages):
        folder = outbox_dir()
        folder.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            # Time first, so that names sort oldest to newest; the random part keeps them unique.
            name = f"{timezone.now():%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:12]}.eml"
            partial = folder / f".{name}.partial"
            try:
                partial.write_bytes(message.message().as_bytes(linesep="\r\n"))
                # A reader never sees half a message: the file appears whole or not at all.
                os.replace(partial, folder / name)
            except OSError:
                partial.unlink(missing_ok=True)
                if not self.fail_silently:
                    raise
                continue
            sent += 1
        return sent


@dataclass
class OutboxMessage:
    name: str
    subject: str
    sender: str
    to: str
    date: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    attachments: list[str] = field(default_factory=list)


def _read(path: Path, with_body: bool) -> OutboxMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    message = OutboxMessage(
        name=path.name,
        subject=str(parsed.get("Subject", "")),
        sender=str(parsed.get("From", "")),
        to=str(parsed.get("To", "")),
        date=str(parsed.get("Date", "")),
    )
    if with_body:
        message.headers = [(key, str(value)) for key, value in parsed.items()]
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
        message.text = text_part.get_content() if text_part is not None else None
        message.html = html_part.get_content() if html_part is not None else None
        message.attachments = [part.get_filename() or "(unnamed)" for part in parsed.iter_attachments()]
    return message


def outbox_messages(limit: int = 200) -> list[OutboxMessage]:
    """The newest `limit` messages in the outbox, newest first (headers only)."""
    folder = outbox_dir()
    if not folder.is_dir():
        return []
    names = sorted((entry.name for entry in os.scandir(folder) if MESSAGE_FILE_NAME.match(entry.name)), reverse=True)
    return [_read(folder / name, with_body=False) for name in names[:limit]]


def outbox_delivery_ids() -> set[int]:
    """The ledger ids of the course emails the outbox received: each file's X-Mooc-Delivery
    header (scheduler.services.delivery_header); test sends and learners' own emails name none.
    Reads only each file's headers."""
    from scheduler.services import delivery_header_id  # services send through this backend

    folder = outbox_dir()
    if not folder.is_dir():
        return set()
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    ids = set()
    for entry in os.scandir(folder):
        if not MESSAGE_FILE_NAME.match(entry.name):
            continue
        with open(entry.path, "rb") as message_file:
            header = parser.parse(message_file).get("X-Mooc-Delivery")
        if header is not None and (number := delivery_header_id(str(header))) is not None:
            ids.add(number)
    return ids


def outbox_message_path(name: str) -> Path | None:
    """The file of one outbox message, or None for a name that is not one (no path tricks)."""
    if not MESSAGE_FILE_NAME.match(name):
        return None
    path = outbox_dir() / name
    return path if path.is_file() else None


def outbox_message(name: str) -> OutboxMessage | None:
    """One outbox message with its headers, text and HTML parts; None when there is none."""
    path = outbox_message_path(name)
    return _read(path, with_body=True) if path is not None else None
