"""The local outbox: in development every email is written to var/outbox/ as an .eml file.

`OutboxEmailBackend` is a Django email backend; `/dev/outbox/` (DEBUG only) reads the
files back and shows each message as a learner's mail client would.
"""

import email
import email.message
import email.parser
import email.policy
import itertools
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
OUTBOX_PAGE_SIZE = 50


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


def _header_block(path: Path) -> email.message.Message:
    """A message's headers alone: the file is read up to the blank line that ends them, and no
    further, so listing a full outbox never reads (let alone parses) a body."""
    lines = []
    with open(path, "rb") as message_file:
        for line in message_file:
            if line in (b"\r\n", b"\n"):
                break
            lines.append(line)
    return email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(b"".join(lines))


def _summary(name: str, parsed: email.message.Message) -> OutboxMessage:
    return OutboxMessage(
        name=name,
        subject=str(parsed.get("Subject", "")),
        sender=str(parsed.get("From", "")),
        to=str(parsed.get("To", "")),
        date=str(parsed.get("Date", "")),
    )


def _names_newest_first(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    # The names start with the moment of sending (OutboxEmailBackend): sorting them sorts by time.
    return sorted((entry.name for entry in os.scandir(folder) if MESSAGE_FILE_NAME.match(entry.name)), reverse=True)


def outbox_messages(limit: int = 200) -> list[OutboxMessage]:
    """The newest `limit` messages in the outbox, newest first (headers only)."""
    folder = outbox_dir()
    return [_summary(name, _header_block(folder / name)) for name in _names_newest_first(folder)[:limit]]


@dataclass(frozen=True)
class OutboxPage:
    messages: list[OutboxMessage]
    number: int
    has_previous: bool
    has_next: bool


def outbox_page(number: int = 1, query: str = "", per_page: int | None = None) -> OutboxPage:
    """Page `number` (from 1) of the outbox, newest first, of the messages whose recipient (To)
    or subject contains `query`, in any case; every message when the query is blank.

    Reads headers only, and only as many files as the page needs: without a query the page's
    own; with one, files from the newest until one match past the page (to know there is a next).
    """
    per_page = per_page or OUTBOX_PAGE_SIZE
    folder = outbox_dir()
    names = _names_newest_first(folder)
    number = max(number, 1)
    start = (number - 1) * per_page
    needle = query.strip().casefold()
    if needle:
        summaries = (_summary(name, _header_block(folder / name)) for name in names)
        matches = (message for message in summaries if needle in message.to.casefold() or needle in message.subject.casefold())
        window = list(itertools.islice(matches, start, start + per_page + 1))
    else:
        window = [_summary(name, _header_block(folder / name)) for name in names[start:start + per_page + 1]]
    return OutboxPage(messages=window[:per_page], number=number, has_previous=number > 1, has_next=len(window) > per_page)


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
    if path is None:
        return None
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    message = _summary(name, parsed)
    message.headers = [(key, str(value)) for key, value in parsed.items()]
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    message.text = text_part.get_content() if text_part is not None else None
    message.html = html_part.get_content() if html_part is not None else None
    message.attachments = [part.get_filename() or "(unnamed)" for part in parsed.iter_attachments()]
    return message
