"""Members' messages through the providers' inbound webhooks, with the providers' own payloads
(inbound_payloads/, the shapes Anymail's tests post) signed as the providers sign them: relayed
to the other members once, and what a request that is not the provider's leaves (nothing)."""

import base64
import copy
import json
import logging
import os
from email.utils import parseaddr

import pytest
from django.core import mail

from groupmail.models import InboundMessage, SenderNotice
from groupmail.tests.conftest import IN_WEEK_1
from groupmail.tests.inbound_requests import GROUP_ADDRESS, InboundWebhooks, mailgun_form_sign, payload
from groupmail.tests.messages import raw_message
from groupmail.webhooks import INBOUND_REQUEST_BYTES_PER_MESSAGE_BYTE
from scheduler.models import Delivery, EmailKind
from scheduler.sending import deliveries_send
from scheduler.tests.conftest import http_blocked, sendgrid_signer, sns_signer, webhooks  # noqa: F401
from scheduler.tests.webhook_requests import AUTH, RESEND_SIGNING_SECRET, WRONG_AUTH

pytestmark = [pytest.mark.django_db, pytest.mark.clock(IN_WEEK_1), pytest.mark.filterwarnings("ignore:django-anymail has dropped")]

WAYS = ["mailgun_mime", "mailgun", "postmark", "amazon_ses", "sendgrid", "sparkpost", "mailjet", "resend"]
OTHER_MEMBERS = ["bob@example.org", "cy@example.org", "dee@example.org"]
RESEND_API = "https://api.resend.com/emails/receiving/"


@pytest.fixture
def inbound(client, webhooks, settings, http_blocked):  # noqa: F811
    """Every inbound webhook configured as the README says; Resend's API answers for the
    messages the test names with `resend_serves`."""
    settings.ANYMAIL = {**settings.ANYMAIL, "RESEND_API_KEY": "re_test_key", "RESEND_INBOUND_SECRET": RESEND_SIGNING_SECRET}
    return InboundWebhooks(client, webhooks)


def resend_serves(http_blocked, event: dict, raw: bytes) -> None:  # noqa: F811
    """Resend's API gives the received email of `event` (as Anymail fetches it), its raw MIME `raw`."""
    email_id = event["data"]["email_id"]
    received = payload("resend", "received_email", event_id=email_id)
    http_blocked.get(RESEND_API + email_id, json=received)
    http_blocked.get(received["raw"]["download_url"], body=raw, content_type="message/rfc822")


def post(inbound, http_blocked, way: str, data=None, **options):  # noqa: F811
    data = payload(way, **options.pop("values", {})) if data is None else data
    if way == "resend":
        resend_serves(http_blocked, data, options.pop("raw", None) or raw_message(message_id=data["data"]["message_id"]))
    return inbound.post(way, data, **options)


def relayed_copies(clock):
    """Send whatever the ledger holds for group messages, and return the copies by recipient."""
    ids = list(Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE, status=Delivery.Status.PENDING).values_list("pk", flat=True))
    deliveries_send(ids, now=clock.now())
    return {message.to[0]: message for message in mail.outbox}


def nothing_stored():
    return not InboundMessage.objects.exists() and not Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE).exists()


# --- Every provider -------------------------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
def test_a_members_message_is_relayed_to_the_other_members(inbound, http_blocked, study_group, clock, way):  # noqa: F811
    response = post(inbound, http_blocked, way, values={"subject": "A question on week 1"})

    assert response.status_code == 200
    stored = InboundMessage.objects.get()
    assert (stored.esp, stored.status) == (way.removesuffix("_mime"), InboundMessage.Status.RELAYED)
    if way != "resend":  # Resend gives no envelope: the To header names the group
        assert (stored.envelope_sender, stored.envelope_recipients) == ("ada@example.org", [GROUP_ADDRESS])
    copies = relayed_copies(clock)
    assert sorted(copies) == OTHER_MEMBERS
    copy_ = copies["bob@example.org"]
    assert parseaddr(copy_.from_email) == ("Ada Lovelace via Group 3", GROUP_ADDRESS)
    assert parseaddr(copy_.reply_to[1])[1] == "ada@example.org"
    if way != "resend":  # its raw message is raw_message()'s
        assert copy_.subject == "[Group 3] A question on week 1"
    assert "Hi all, Ada here" in copy_.body


@pytest.mark.parametrize("way", ["postmark", "amazon_ses", "mailgun_mime", "sendgrid"])
def test_a_webhook_posted_again_relays_the_message_once(inbound, http_blocked, study_group, clock, way):  # noqa: F811
    data = payload(way)
    assert post(inbound, http_blocked, way, copy.deepcopy(data)).status_code == 200
    assert post(inbound, http_blocked, way, copy.deepcopy(data)).status_code == 200  # the provider retrying

    assert InboundMessage.objects.count() == 1
    assert sorted(relayed_copies(clock)) == OTHER_MEMBERS
    assert Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE).count() == 3


@pytest.mark.parametrize("way", WAYS)
def test_without_the_right_basic_auth_nothing_is_stored(inbound, http_blocked, study_group, way, caplog):  # noqa: F811
    for auth in (None, WRONG_AUTH):
        response = post(inbound, http_blocked, way, auth=auth)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Basic realm="Anymail WEBHOOK_SECRET"'
    assert nothing_stored()
    assert f"{way.removesuffix('_mime')} inbound webhook: missing or wrong basic auth" in caplog.text


@pytest.mark.parametrize("way", ["mailgun", "mailgun_mime", "amazon_ses", "resend"])
def test_a_wrong_signature_is_refused(inbound, webhooks, client, http_blocked, study_group, way):  # noqa: F811
    data = payload(way)
    if way.startswith("mailgun"):
        response = inbound.post(way, mailgun_form_sign(data, key="not-mailguns-key"), sign=False)
    elif way == "resend":
        response = inbound.post(way, data, headers={"HTTP_SVIX_SIGNATURE": "v1,bm90IHRoZSBzaWduYXR1cmU="})
    else:  # Amazon SNS: signed, then changed on the way
        body, content_type, headers = webhooks.request("amazon_ses", data)
        body = body.replace(b"Hello group", b"Hello world")
        response = client.post(inbound.url(way), data=body, content_type=content_type, **AUTH, **headers)

    assert response.status_code == 403
    assert nothing_stored()


@pytest.mark.parametrize(
    "way, body",
    [
        ("postmark", b'{"FromFull": {"Email": "ada@example.org"'),  # cut short
        ("postmark", json.dumps({"RecordType": "Delivery", "MessageID": "x", "Recipient": "a@b.c"}).encode()),  # a tracking event
        ("sparkpost", b'[{"msys": {"relay_message": {"protocol": "smtp"}}}]'),  # no content
    ],
)
def test_a_payload_that_cannot_be_read_is_answered_400_and_logged(inbound, client, study_group, way, body, caplog):
    with caplog.at_level(logging.WARNING, logger="scheduler.webhooks"):
        response = client.post(inbound.url(way), data=body, content_type="application/json", **AUTH)

    assert response.status_code == 400
    assert nothing_stored()
    assert f"{way} inbound webhook: unreadable payload" in caplog.text
    assert body[:30].decode() in caplog.text  # the start of the payload, to debug with


def test_an_sns_notification_whose_message_is_not_sess_is_answered_400(inbound, study_group):
    data = payload("amazon_ses")
    data["Message"] = "not JSON"

    assert inbound.post("amazon_ses", data).status_code == 400
    assert nothing_stored()


def test_a_webhook_not_configured_here_answers_503(inbound, settings, study_group, caplog):
    settings.ANYMAIL = {key: value for key, value in settings.ANYMAIL.items() if key != "MAILGUN_WEBHOOK_SIGNING_KEY"}

    assert inbound.post("mailgun_mime").status_code == 503
    assert nothing_stored()
    assert "mailgun inbound webhook is not configured" in caplog.text


def test_when_resends_api_does_not_answer_the_webhook_answers_503_for_a_retry(inbound, study_group):
    response = inbound.post("resend")  # the API is not told to answer: the fetch fails

    assert response.status_code == 503 and response["Retry-After"]
    assert nothing_stored()


# --- Messages the worker refuses: answered 200 all the same -------------------------------------


@pytest.mark.parametrize("way", ["postmark", "mailgun_mime", "amazon_ses"])
def test_a_message_from_a_non_member_is_answered_200_and_refused(inbound, http_blocked, study_group, clock, way):  # noqa: F811
    response = post(inbound, http_blocked, way, values={"sender_name": "Eve", "sender_address": "eve@example.net"})

    assert response.status_code == 200
    stored = InboundMessage.objects.get()
    assert (stored.status, stored.refusal) == (InboundMessage.Status.REFUSED, InboundMessage.Refusal.NOT_MEMBER)
    assert not Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE).exists()
    assert SenderNotice.objects.get().refusal == InboundMessage.Refusal.NOT_MEMBER  # Eve is told, once


def test_a_bounce_to_the_group_is_refused_and_nobody_is_answered(inbound, study_group):
    data = payload("mailgun_mime")
    data["sender"] = ""  # the null reverse-path

    assert inbound.post("mailgun_mime", data).status_code == 200
    stored = InboundMessage.objects.get()
    assert (stored.envelope_sender, stored.refusal) == ("<>", InboundMessage.Refusal.AUTOMATED)
    assert not SenderNotice.objects.exists()


# --- Size: past Django's DATA_UPLOAD_MAX_MEMORY_SIZE, up to GROUP_MAIL_MAX_MESSAGE_BYTES --------


@pytest.fixture
def small_django_limit(group_mail):
    """Django's limit well below a message the group mail takes (1 MB in these tests)."""
    group_mail.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    group_mail.GROUP_MAIL_MAX_ATTACHMENT_BYTES = 1024 * 1024
    return group_mail


ATTACHMENT = bytes(range(256)) * 1200 + b"\r\n\n\r end"  # 300 KB of every byte, line ends included


@pytest.mark.parametrize("way", ["postmark", "mailgun_mime", "mailgun", "sendgrid"])
def test_a_message_larger_than_djangos_limit_but_within_ours_is_relayed_whole(inbound, small_django_limit, study_group, clock, way):
    data = payload(way)
    if way == "postmark":
        data["Attachments"] = [{"Name": "notes.bin", "ContentType": "application/octet-stream",
                                "Content": base64.b64encode(ATTACHMENT).decode(), "ContentLength": len(ATTACHMENT)}]
    elif way == "mailgun":  # parsed fields: the attachment is a posted file
        upload = _named_file(ATTACHMENT, "notes.bin")
        data |= {"attachment-count": "1", "attachment-1": upload, "body-plain": "Hi all, Ada here\n" + "x" * 70_000}
    else:  # the whole message in one form field
        field = "body-mime" if way == "mailgun_mime" else "email"
        data[field] = raw_message(attachments=[("notes.bin", ATTACHMENT, "application/octet-stream")]).decode()

    assert inbound.post(way, data).status_code == 200

    assert InboundMessage.objects.get().status == InboundMessage.Status.RELAYED
    copies = relayed_copies(clock)
    assert sorted(copies) == OTHER_MEMBERS
    assert [(name, content) for name, content, _ in copies["cy@example.org"].attachments] == [("notes.bin", ATTACHMENT)]


def test_a_message_over_the_group_limit_is_answered_200_and_its_sender_told(inbound, small_django_limit, study_group):
    data = payload("postmark")
    big = os.urandom(1024 * 1024)  # over GROUP_MAIL_MAX_MESSAGE_BYTES, within what a request may carry
    data["Attachments"] = [{"Name": "big.bin", "ContentType": "application/octet-stream", "Content": base64.b64encode(big).decode()}]

    assert inbound.post("postmark", data).status_code == 200
    stored = InboundMessage.objects.get()
    assert (stored.status, stored.refusal) == (InboundMessage.Status.REFUSED, InboundMessage.Refusal.TOO_BIG)
    assert SenderNotice.objects.get().refusal == InboundMessage.Refusal.TOO_BIG


def test_a_request_over_what_a_message_may_take_is_answered_200_unread_and_logged(inbound, small_django_limit, study_group, caplog):
    limit = INBOUND_REQUEST_BYTES_PER_MESSAGE_BYTE * small_django_limit.GROUP_MAIL_MAX_MESSAGE_BYTES
    data = payload("postmark")
    data["Attachments"] = [{"Name": "huge.bin", "ContentType": "application/octet-stream", "Content": "A" * limit}]

    response = inbound.post("postmark", data)

    assert response.status_code == 200
    assert nothing_stored()
    assert "postmark inbound webhook: a message refused unread" in caplog.text


def _named_file(content: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, "application/octet-stream")
