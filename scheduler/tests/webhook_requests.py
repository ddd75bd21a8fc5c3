"""Tracking webhook requests as each provider makes them, from the payload files in
webhook_payloads/<esp>/ (shapes from Anymail's own tests), signed the way the provider signs:

- placeholders in a file: {{delivery}}, {{learner}}, {{recipient}}, {{message_id}} (the email's
  row and address), {{token}} and {{signature}} (filled by the signing below);
- Mailgun: HMAC-SHA256 of timestamp + token with MAILGUN_WEBHOOK_SIGNING_KEY, the token a digest
  of the event (one per event, the same when Mailgun sends it again);
- Amazon SES: an SNS envelope signed with a key of the test's own, its self-signed certificate
  put in the certificate cache under the message's SigningCertURL (no network); the canonical
  string is built here from AWS's documentation, not from scheduler/sns.py;
- SendGrid: ECDSA over timestamp + body; Resend: svix's own Webhook.sign.
"""

import base64
import datetime
import hashlib
import hmac
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from scheduler import sns
from scheduler.tests.helpers import START, at

PAYLOADS = Path(__file__).parent / "webhook_payloads"
SECRET = "tracker:s3cret-for-tests"
AUTH = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(SECRET.encode()).decode()}
WRONG_AUTH = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"tracker:wrong").decode()}
MAILGUN_SIGNING_KEY = "mailgun-signing-key-for-tests"
RESEND_SIGNING_SECRET = "whsec_" + base64.b64encode(b"resend-signing-secret-for-tests").decode()
RECIPIENT = "zoe@example.org"
# The pass that sends week 1 (Monday 10:00 UTC: 09:00 has come in Lisbon and London).
WEEK_1_PASS = at(START, 10)


def payload_text(esp: str, name: str, row=None, **values) -> str:
    """The file's text with its placeholders filled from the email's row (and `values`)."""
    filled = {"recipient": RECIPIENT, "delivery": "0", "learner": "00000000-0000-0000-0000-000000000000", "message_id": "not-known"}
    if row is not None:
        filled.update(delivery=str(row.pk), learner=str(row.learner.public_id), message_id=row.provider_message_id or "not-known")
    filled.update(values)
    text = (PAYLOADS / esp / f"{name}.json").read_text()
    for key, value in filled.items():
        text = text.replace("{{%s}}" % key, value)
    return text


def payload(esp: str, name: str, row=None, **values):
    return json.loads(payload_text(esp, name, row, **values))


# --- Signing ------------------------------------------------------------------------------------


def mailgun_sign(data: dict, key: str = MAILGUN_SIGNING_KEY) -> dict:
    signature = data.setdefault("signature", {})
    if signature.get("token", "{{token}}") == "{{token}}":
        signature["token"] = hashlib.sha256(json.dumps(data.get("event-data"), sort_keys=True).encode()).hexdigest()[:50]
    signature.setdefault("timestamp", "1796032805")
    signature["signature"] = hmac.new(key.encode(), f"{signature['timestamp']}{signature['token']}".encode(), hashlib.sha256).hexdigest()
    return data


def sns_canonical(message: dict) -> bytes:
    """AWS's "string to sign": Key\\nValue\\n for the type's keys, alphabetically (Subject only if present)."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{key}\n{message[key]}\n" for key in keys if key in message).encode()


class SnsSigner:
    """An RSA key and its self-signed certificate standing for AWS's."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(4242).not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(datetime.datetime(2040, 1, 1, tzinfo=datetime.UTC)).sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def seed(self, url: str) -> None:
        """Put the certificate in the shared cache as if fetched from `url` before."""
        cache.set(sns.CERT_CACHE_PREFIX + url, self.pem)

    def sign(self, message: dict, version: str = "1") -> dict:
        message = dict(message)
        message["SignatureVersion"] = version
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        message["Signature"] = base64.b64encode(self.key.sign(sns_canonical(message), padding.PKCS1v15(), digest)).decode()
        self.seed(message["SigningCertURL"])
        return message


class SendGridSigner:
    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = self.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.verification_key = "".join(public.decode().splitlines()[1:-1])  # the dashboard's form: no PEM armour

    def headers(self, body: bytes, timestamp: str = "1796032805") -> dict:
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": timestamp,
            "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": base64.b64encode(signature).decode(),
        }


def resend_headers(body: bytes, svix_id: str, secret: str = RESEND_SIGNING_SECRET) -> dict:
    from svix.webhooks import Webhook

    moment = timezone.now()  # svix checks the timestamp against the (test's) clock
    signature = Webhook(secret).sign(msg_id=svix_id, timestamp=moment, data=body.decode())
    return {"HTTP_SVIX_ID": svix_id, "HTTP_SVIX_TIMESTAMP": str(int(moment.timestamp())), "HTTP_SVIX_SIGNATURE": signature}


# --- Posting ------------------------------------------------------------------------------------


class Webhooks:
    """Posts payloads to /anymail/<esp>/tracking/ with the provider's content type, headers and
    signature, and our basic auth (`auth=None` for none)."""

    def __init__(self, client, sns_signer: SnsSigner, sendgrid_signer: SendGridSigner, http=None):
        self.client, self.sns, self.sendgrid = client, sns_signer, sendgrid_signer
        self.http = http  # the `responses` mock every outgoing request meets (conftest.http_blocked)

    def request(self, esp: str, data, *, sign: bool = True, svix_id: str | None = None, sns_version: str = "1") -> tuple[bytes, str, dict]:
        """(body, content type, headers) of the provider's request carrying `data`."""
        headers = {}
        if esp == "mailgun" and sign:
            data = mailgun_sign(data)
        if esp == "amazon_ses":
            if isinstance(data.get("Message"), (dict, list)):
                data = {**data, "Message": json.dumps(data["Message"]) + "\n"}  # as SNS carries SES's event
            if sign:
                data = self.sns.sign(data, sns_version)
            headers = {"HTTP_X_AMZ_SNS_MESSAGE_TYPE": data["Type"], "HTTP_X_AMZ_SNS_MESSAGE_ID": data["MessageId"]}
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        if esp == "sendgrid" and sign:
            headers = self.sendgrid.headers(body)
        if esp == "resend" and sign:
            headers = resend_headers(body, svix_id or "msg_" + hashlib.sha256(body).hexdigest()[:24])
        content_type = "text/plain; charset=UTF-8" if esp == "amazon_ses" else "application/json"  # SNS posts JSON as text
        return body, content_type, headers

    def post(self, esp: str, data, *, auth=AUTH, headers=None, **options):
        body, content_type, signed = self.request(esp, data, **options)
        return self.client.post(
            reverse(f"{esp}_tracking_webhook"), data=body, content_type=content_type, **(auth or {}), **signed, **(headers or {})
        )

    def send(self, esp: str, name: str, row=None, **options):
        """Post the payload file `name`, filled for `row`."""
        return self.post(esp, payload(esp, name, row), **options)
