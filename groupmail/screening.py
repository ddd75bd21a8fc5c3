"""What a received message is, read from its headers alone: pure functions, no database.

The rules that keep a list from mailing machines or itself, after GNU Mailman 3's (its
`loop`, `administrivia` and auto-response handling) and RFC 3834: an auto-reply, a bounce, a
message from another list, or one of our own relays coming back is never relayed, and its
sender is never answered (answering a machine is how mail loops start).
"""

from email.message import EmailMessage
from email.utils import getaddresses, parseaddr

from django.conf import settings

from groupmail.inbound import NULL_SENDER

# Set on every copy we relay and every notice we send: a message carrying it came from us.
LOOP_HEADER = "X-Loop"
_MACHINE_SENDERS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "do-not-reply", "donotreply")


def header_text(message: EmailMessage, name: str) -> str:
    """A header's value as text, or "" when absent or unreadable (malformed mail must not raise)."""
    try:
        value = message.get(name)
    except (TypeError, ValueError, IndexError, AttributeError):
        return ""
    return str(value).strip() if value is not None else ""


def address_of(value: str) -> str:
    """The bare address in a header value such as `Ada <ADA@x.org>`, case-folded; "" if none."""
    address = parseaddr(value)[1]
    return address.casefold() if "@" in address else ""


def addresses_in(message: EmailMessage, *names: str) -> list[str]:
    """Every address in these headers (To, Cc ...), case-folded, in order, once each."""
    values = [header_text(message, name) for name in names]
    found = []
    for _, address in getaddresses([value for value in values if value]):
        address = address.casefold()
        if "@" in address and address not in found:
            found.append(address)
    return found


def automated_reason(message: EmailMessage, envelope_sender: str) -> str | None:
    """Why this message came from a machine or a loop (never relayed, never answered), or None."""
    domain = settings.GROUP_MAIL_DOMAIN.casefold()
    if envelope_sender == NULL_SENDER:
        return "a bounce (empty envelope sender)"
    if header_text(message, LOOP_HEADER) or header_text(message, "X-Mooc-Delivery"):
        return "one of our own emails came back (a loop)"
    auto_submitted = header_text(message, "Auto-Submitted").casefold()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = header_text(message, "Precedence").casefold()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if header_text(message, name):
            return f"an auto-reply ({name})"
    if header_text(message, "List-Id"):
        return "a message from a mailing list"
    if message.get_content_type() == "multipart/report":
        return "a delivery or read report"
    sender = address_of(header_text(message, "From"))
    local, _, sender_domain = sender.partition("@")
    if local in _MACHINE_SENDERS:
        return f"sent by {local}"
    if domain and sender_domain == domain:
        return "sent from one of our group addresses (a loop)"
    return None


def group_slugs(message: EmailMessage, envelope_recipients: list[str]) -> list[str]:
    """The local parts of the group addresses this message went to: the envelope's recipients
    where the way in gives them (a Bcc to a group is there only), else its To and Cc."""
    domain = settings.GROUP_MAIL_DOMAIN.casefold()
    recipients = [address.casefold() for address in envelope_recipients] or addresses_in(message, "To", "Cc")
    slugs = []
    for address in recipients:
        local, _, address_domain = address_of(address).rpartition("@")
        if address_domain == domain and local and local not in slugs:
            slugs.append(local)
    return slugs
