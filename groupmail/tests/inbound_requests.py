"""Inbound webhook requests as each provider makes them, from the payload files in
inbound_payloads/<esp>/ (the shapes Anymail's own tests/test_<esp>_inbound.py post), signed the
way the provider signs (scheduler/tests/webhook_requests.py: Mailgun's HMAC, Amazon SNS's RSA).

Placeholders in a file: {{sender_name}}, {{sender_address}}, {{to}} (the To header),
{{recipient}} (the envelope's), {{subject}}, {{body}}, {{message_id}}, {{event_id}},
{{ses_message_id}} and {{token}}: each request gets new ids unless the test names them.
"""

import json
import uuid
from pathlib import Path

from django.urls import reverse

from scheduler.tests.webhook_requests import AUTH, mailgun_sign, resend_headers

PAYLOADS = Path(__file__).parent / "inbound_payloads"
GROUP_ADDRESS = "winter-3@groups.example.org"
FILES = {
    "amazon_ses": "inbound", "mailgun": "inbound", "mailgun_mime": "inbound_mime", "mailjet": "inbound",
    "postmark": "inbound", "resend": "inbound", "sendgrid": "inbound_mime", "sparkpost": "inbound",
}
FORM_POSTED = {"mailgun", "mailgun_mime", "sendgrid"}  # multipart/form-data; the others JSON


def payload(way: str, name: str | None = None, **values):
    """The way's payload file (`mailgun_mime`: Mailgun's raw MIME forward), or the file `name`, filled."""
    esp = way.removesuffix("_mime")
    filled = {
        "sender_name": "Ada Lovelace", "sender_address": "ada@example.org", "to": GROUP_ADDRESS, "recipient": GROUP_ADDRESS,
        "subject": "Hello group", "body": "Hi all, Ada here", "message_id": f"<{uuid.uuid4().hex}@mail.example.org>",
        "event_id": str(uuid.uuid4()), "ses_message_id": uuid.uuid4().hex, "token": uuid.uuid4().hex,
    } | values
    text = (PAYLOADS / esp / f"{name or FILES[way]}.json").read_text()
    for key, value in filled.items():
        text = text.replace("{{%s}}" % key, value)
    return json.loads(text)


def mailgun_form_sign(fields: dict, key: str | None = None) -> dict:
    """Mailgun's inbound signature: the form's timestamp, token and signature fields."""
    signed = mailgun_sign({"signature": {"token": fields["token"], "timestamp": fields["timestamp"]}}, **({"key": key} if key else {}))
    return {**fields, "signature": signed["signature"]["signature"]}


class InboundWebhooks:
    """Posts payloads to /anymail/<esp>/inbound/ with the provider's content type, headers and
    signature, and our basic auth (`auth=None` for none). Uses the tracking tests' `webhooks`
    fixture for the settings (WEBHOOK_SECRET, the signing keys) and its SNS signer."""

    def __init__(self, client, webhooks):
        self.client, self.webhooks = client, webhooks

    def url(self, way: str) -> str:
        return reverse("mailgun_inbound_mime_webhook" if way == "mailgun_mime" else f"{way}_inbound_webhook")

    def post(self, way: str, data=None, *, auth=AUTH, sign: bool = True, headers=None, **values):
        data = payload(way, **values) if data is None else data
        url, extra = self.url(way), dict(headers or {})
        if way in FORM_POSTED:
            if way.startswith("mailgun") and sign:
                data = mailgun_form_sign(data)
            return self.client.post(url, data=data, **(auth or {}), **extra)  # the test client posts multipart/form-data
        if way == "amazon_ses":
            body, content_type, signed = self.webhooks.request("amazon_ses", data, sign=sign)
            extra = signed | extra
        else:
            body, content_type = json.dumps(data).encode(), "application/json"
            if way == "resend" and sign:
                extra = resend_headers(body, "msg_" + uuid.uuid4().hex[:24]) | extra
        return self.client.post(url, data=body, content_type=content_type, **(auth or {}), **extra)
