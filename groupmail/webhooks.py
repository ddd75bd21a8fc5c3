"""The providers' inbound webhooks, `/anymail/<esp>/inbound/`, through Anymail's own views.

Anymail's views check the request and turn the ESP's payload into messages; each message goes
through the one door (groupmail/inbound.py: stored once, screened by a worker). The checks and
answers are the tracking webhooks' (scheduler/webhooks.py, CheckedWebhook and SnsVerified): 401
without basic auth, 403 for a wrong signature, 400 for a payload that cannot be read, 503 when
the webhook is not configured here. Added for inbound mail:

| Request                                         | Answer | Why                                                   |
|-------------------------------------------------|--------|-------------------------------------------------------|
| a message (or the same one again)               | 200    | stored once; the worker relays, holds or refuses it   |
| a message we will refuse (not a member, a loop) | 200    | decided by the worker, after the answer: a 4xx or 5xx would make the provider retry it for hours |
| larger than INBOUND_REQUEST_BYTES_PER_MESSAGE_BYTE x GROUP_MAIL_MAX_MESSAGE_BYTES | 200 | not read; logged as refused (below) |
| the provider's API did not give us the message now (Resend and Brevo fetch it, Amazon SES from S3) | 503 | with Retry-After; the provider sends the webhook again |

Size. Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) on every URL, and a member
may send GROUP_MAIL_MAX_MESSAGE_BYTES (10 MB): on these URLs only, once basic auth passed, the
body is read here up to the larger limit (a message's base64 attachments add a third, and
Postmark's JSON may carry the message twice, raw and parsed). A message over
GROUP_MAIL_MAX_MESSAGE_BYTES inside such a request is stored as its headers alone and refused
by the worker, which tells the sender. A request over the limit is answered 200 unread, so
nothing can tell the sender; 413 was not chosen because Mailgun retries every answer but 200
and 406 for 8 hours, and Postmark every one but 200 and 403, so it would be refused again and
again; each provider's own limit (25 to 40 MB) is close above ours anyway.
"""

import logging
import os
from dataclasses import dataclass
from email.encoders import encode_base64
from email.parser import BytesParser
from email.policy import HTTP, default as default_policy

import requests
from anymail.webhooks.amazon_ses import AmazonSESInboundWebhookView, AnymailBotoClientAPIError
from anymail.webhooks.brevo import BrevoInboundWebhookView
from anymail.webhooks.mailgun import MailgunInboundWebhookView
from anymail.webhooks.mailjet import MailjetInboundWebhookView
from anymail.webhooks.postmark import PostmarkInboundWebhookView
from anymail.webhooks.resend import ResendInboundWebhookView
from anymail.webhooks.sendgrid import SendGridInboundWebhookView
from anymail.webhooks.sparkpost import SparkPostInboundWebhookView
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse, QueryDict
from django.urls import path
from django.utils import timezone
from django.utils.datastructures import MultiValueDict

from groupmail.inbound import NULL_SENDER, inbound_receive
from scheduler.webhooks import CheckedWebhook, SnsVerified, Unavailable, Unreadable, webhook_endpoint

try:  # boto3 is needed only with Amazon SES (requirements-dev.txt pins it)
    from botocore.exceptions import BotoCoreError
except ImportError:  # pragma: no cover
    BotoCoreError = ()

logger = logging.getLogger(__name__)

# A request may be this many times GROUP_MAIL_MAX_MESSAGE_BYTES (see the module's docstring).
INBOUND_REQUEST_BYTES_PER_MESSAGE_BYTE = 3
# Errors of the provider's API, asked for the message inside the request: try again later.
_FETCH_ERRORS = (requests.RequestException, AnymailBotoClientAPIError, BotoCoreError)


def inbound_request_max_bytes() -> int:
    return INBOUND_REQUEST_BYTES_PER_MESSAGE_BYTE * settings.GROUP_MAIL_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class ReceivedMessage:
    """One message of a webhook's payload, as groupmail.inbound.inbound_receive takes it."""

    raw: bytes
    envelope_sender: str | None
    envelope_recipients: list[str]
    event_id: str


class ReceiveMessages(CheckedWebhook):
    """Placed before an Anymail inbound view: its checks and parsing, then each message stored
    once and queued for screening (groupmail/inbound.py), instead of Anymail's signal."""

    webhook = "inbound"

    def events_read(self, request) -> list[ReceivedMessage]:
        if not _body_read(request, self.esp):
            return []
        return super().events_read(request)

    def events_parse(self, request) -> list[ReceivedMessage]:
        try:
            events = super().events_parse(request)
        except Unreadable as error:
            if isinstance(error.__cause__, _FETCH_ERRORS):
                raise Unavailable(f"the message could not be fetched from {self.esp}: {error.__cause__}") from error.__cause__
            raise
        try:
            return [_received(event) for event in events if _has_message(event, self.esp)]
        except (TypeError, ValueError, LookupError, AttributeError) as error:  # a message that cannot be written as bytes
            raise Unreadable(type(error).__name__) from error

    def events_accept(self, request, events: list[ReceivedMessage]) -> HttpResponse:
        now = timezone.now()
        for message in events:
            inbound_receive(
                message.raw, esp=self.esp, now=now, envelope_sender=message.envelope_sender,
                envelope_recipients=message.envelope_recipients, event_id=message.event_id,
            )
        return HttpResponse()


def _has_message(event, esp: str) -> bool:
    if event.message is None:  # Resend's email.received without an email id: nothing to fetch
        logger.warning("%s inbound webhook: an event (%s) without a message, ignored", esp, event.event_id)
        return False
    return True


def _received(event) -> ReceivedMessage:
    message = event.message
    recipient = message.envelope_recipient
    return ReceivedMessage(
        raw=message_bytes(message), envelope_sender=_envelope_sender(message.envelope_sender),
        envelope_recipients=[recipient] if recipient else [], event_id=event.event_id or "",
    )


def message_bytes(message) -> bytes:
    """An Anymail inbound message as RFC 5322 bytes.

    From a provider's parsed fields (Postmark without its raw email, Mailgun's and SendGrid's
    parsed forms, Mailjet, Brevo), Anymail builds each attachment with its bytes as they are and
    no Content-Transfer-Encoding; as_bytes() would write those with their line ends changed (a
    binary file loses every CR). Such parts (not text, no encoding named) are base64-encoded
    first, as any mail program sends them."""
    for part in message.walk():
        if part.get_content_maintype() not in ("multipart", "message", "text") and "Content-Transfer-Encoding" not in part:
            encode_base64(part)
    try:
        return message.as_bytes()
    except (UnicodeError, LookupError):  # a header the default policy cannot write as ASCII
        return message.as_bytes(policy=default_policy.clone(utf8=True))


def _envelope_sender(sender: str | None) -> str | None:
    """Anymail's envelope_sender: None where the provider does not say, "" (or "<>") for the
    null reverse-path of a bounce, stored as NULL_SENDER so that screening knows it."""
    if sender is None:
        return None
    sender = sender.strip()
    return NULL_SENDER if sender in ("", "<>") else sender


def _body_read(request, esp: str) -> bool:
    """Read the body, up to inbound_request_max_bytes() (past Django's DATA_UPLOAD_MAX_MEMORY_SIZE);
    False, unread, when it is larger."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > inbound_request_max_bytes():
        logger.warning(
            "%s inbound webhook: a message refused unread, %d bytes is over the %d a request may take "
            "(GROUP_MAIL_MAX_MESSAGE_BYTES x %d); answered 200 so that the provider does not retry it",
            esp, length, inbound_request_max_bytes(), INBOUND_REQUEST_BYTES_PER_MESSAGE_BYTE,
        )
        return False
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if django_limit is None or length <= django_limit:
        # Read now, whatever the content type: a 400's log quotes the body, which Django's form
        # parser would otherwise have consumed.
        request.body  # noqa: B018
        return True
    # Django's own reading refuses this size; the body is read here and given to the request as
    # if Django had read it (its _body, and for a form its _post and _files), so that Anymail's
    # view finds request.body and request.POST as usual.
    request._body = request.read()
    if request.content_type == "multipart/form-data":
        request._post, request._files = form_data_parse(request.META["CONTENT_TYPE"], request._body, request.encoding)
    return True


def form_data_parse(content_type: str, body: bytes, encoding: str | None) -> tuple[QueryDict, MultiValueDict]:
    """A multipart/form-data body's fields and files, as Django's request.POST and request.FILES.

    Django's own parser refuses form fields larger than DATA_UPLOAD_MAX_MEMORY_SIZE in all, and
    Mailgun and SendGrid post a whole message as one field (body-mime, email): read with the
    email package instead, as Anymail's SendGrid view re-reads such a body. Raises ValueError
    when the body is not multipart."""
    form = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not form.is_multipart():
        raise ValueError("not a multipart/form-data body")
    fields, files = QueryDict(mutable=True, encoding=encoding), MultiValueDict()
    for part in form.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        content = part.get_payload(decode=True) or b""
        filename = part.get_param("filename", header="content-disposition")
        if filename is not None:
            # Only the name, never a path, as Django's parser keeps it.
            files.appendlist(name, SimpleUploadedFile(os.path.basename(filename.replace("\\", "/")), content, part.get_content_type()))
        else:
            fields.appendlist(name, content.decode(part.get_content_charset() or encoding or "utf-8", "replace"))
    fields._mutable = False
    return fields, files


class AmazonSESInbound(SnsVerified, AmazonSESInboundWebhookView):
    """Anymail's Amazon SES inbound view, SNS-verified as the tracking one."""


def _view(name: str, anymail_view: type) -> type:
    return type(f"{anymail_view.__name__}Receiving", (ReceiveMessages, anymail_view), {"esp": name})


# Every ESP the README names that Anymail receives mail from, by the name in its URL.
INBOUND_VIEWS = {
    "amazon_ses": _view("amazon_ses", AmazonSESInbound),
    "brevo": _view("brevo", BrevoInboundWebhookView),
    "mailgun": _view("mailgun", MailgunInboundWebhookView),
    "mailjet": _view("mailjet", MailjetInboundWebhookView),
    "postmark": _view("postmark", PostmarkInboundWebhookView),
    "resend": _view("resend", ResendInboundWebhookView),
    "sendgrid": _view("sendgrid", SendGridInboundWebhookView),
    "sparkpost": _view("sparkpost", SparkPostInboundWebhookView),
}

urlpatterns = [path(f"{esp}/inbound/", webhook_endpoint(view), name=f"{esp}_inbound_webhook") for esp, view in INBOUND_VIEWS.items()] + [
    # Mailgun posts the raw message (body-mime) to a URL with "mime" in it, parsed fields to the
    # other one; the view reads either (as Anymail's own urls.py has both).
    path("mailgun/inbound_mime/", webhook_endpoint(INBOUND_VIEWS["mailgun"]), name="mailgun_inbound_mime_webhook"),
]
