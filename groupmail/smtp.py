"""The local SMTP listener for development (`manage.py group_mail_smtpd`): what a member's mail
program sends to a group address on this machine goes through the one door
(groupmail/inbound.py), as a provider's inbound webhook would bring it in production.

aiosmtpd is a development dependency (requirements-dev.txt, which `make run` installs): it is
imported only when the listener starts, never by the site.

What the listener answers:

| Command                                   | Answer | Why                                         |
|-------------------------------------------|--------|---------------------------------------------|
| RCPT TO an address at GROUP_MAIL_DOMAIN   | 250    | a group's address (known or not: the worker decides, and tells the sender) |
| RCPT TO any other address                 | 550    | we relay for no one                         |
| MAIL FROM with SIZE over the limit, or DATA larger than GROUP_MAIL_MAX_MESSAGE_BYTES | 552 | aiosmtpd's own size check |
| DATA, stored (or stored before)           | 250    | the worker screens and relays it            |
| DATA, the database did not take it        | 451    | the mail program tries again later          |
"""

import logging

from django.conf import settings
from django.db import close_old_connections

from groupmail.inbound import NULL_SENDER, inbound_receive

logger = logging.getLogger(__name__)

ESP = "smtp"  # the InboundMessage.esp of what the listener received


class GroupMailHandler:
    """aiosmtpd's handler: each message with its envelope into inbound_receive."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        _, _, domain = address.rpartition("@")
        if not domain or domain.casefold() != settings.GROUP_MAIL_DOMAIN.casefold():
            return f"550 5.1.1 <{address}>: not a group address (they end in @{settings.GROUP_MAIL_DOMAIN})"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        from asgiref.sync import sync_to_async

        try:
            await sync_to_async(message_receive)(envelope.original_content or b"", envelope.mail_from, list(envelope.rcpt_tos))
        except Exception:  # noqa: BLE001 - the mail program keeps its message and tries again
            logger.exception("Group mail SMTP listener: a message from %s could not be stored", envelope.mail_from)
            return "451 4.3.0 The message could not be stored now; try again later"
        return "250 OK: queued for the group"


def message_receive(raw: bytes, mail_from: str | None, rcpt_tos: list[str]) -> None:
    """One message as the listener received it, through inbound_receive. Runs in a thread that
    lives as long as the listener: stale database connections are closed around it, as Django
    does around a request."""
    from django.utils import timezone

    close_old_connections()
    try:
        inbound_receive(
            raw, esp=ESP, now=timezone.now(), envelope_sender=mail_from if mail_from not in (None, "", "<>") else NULL_SENDER,
            envelope_recipients=rcpt_tos,
        )
    finally:
        close_old_connections()


def smtp_listener_start(host: str, port: int):
    """Start the listener on host:port in a thread of its own; returns aiosmtpd's Controller
    (stop it with .stop()). Raises ImportError without aiosmtpd, OSError if the port is taken."""
    from aiosmtpd.controller import Controller

    controller = Controller(
        GroupMailHandler(), hostname=host, port=port, server_hostname=settings.GROUP_MAIL_DOMAIN,
        data_size_limit=settings.GROUP_MAIL_MAX_MESSAGE_BYTES,
    )
    controller.start()
    return controller
