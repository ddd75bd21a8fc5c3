"""The ESPs the README names, for tests that send through their real Anymail backends with only
the HTTP call intercepted: each ESP's settings, send API and success answer (the ones Anymail's
own tests use), how to read back what it received, and the interception itself."""

import base64
import contextlib
import email
import email.policy
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import responses


@dataclass
class Received:
    """What an ESP received, in one shape whatever the ESP's own format."""

    to: list[str]
    subject: str
    text: str
    html: str
    headers: dict[str, str]
    metadata: dict[str, str]
    tags: list[str]
    # SendGrid answers with no id: Anymail makes one up and sends it in the payload.
    message_id_sent: str | None = None


@dataclass
class Esp:
    name: str
    backend: str
    anymail: dict  # settings.ANYMAIL, as the README's ANYMAIL_* variables make it
    url: str
    status: int
    answer: str  # {to} is the recipient
    message_id: str | None  # the provider's id in `answer`
    read: Callable[[bytes], Received]
    environment: dict = field(default_factory=dict)  # boto3 reads AWS_* itself


# --- Reading each ESP's payload -----------------------------------------------------------------------


def read_mailgun(body: bytes) -> Received:
    fields = parse_qs(body.decode(), keep_blank_values=True)  # a form: multipart only with attachments
    return Received(
        to=fields["to"], subject=fields["subject"][0], text=fields["text"][0], html=fields["html"][0],
        headers={name[2:]: values[0] for name, values in fields.items() if name.startswith("h:")},
        metadata={name[2:]: values[0] for name, values in fields.items() if name.startswith("v:")},
        tags=fields.get("o:tag", []),
    )


def read_postmark(body: bytes) -> Received:
    data = json.loads(body)
    return Received(
        to=[data["To"]], subject=data["Subject"], text=data["TextBody"], html=data["HtmlBody"],
        headers={header["Name"]: header["Value"] for header in data["Headers"]},
        metadata=data["Metadata"], tags=[data["Tag"]] if "Tag" in data else [],
    )


def read_sendgrid(body: bytes) -> Received:
    data = json.loads(body)
    [personalization] = data["personalizations"]
    content = {part["type"]: part["value"] for part in data["content"]}
    return Received(
        to=[address["email"] for address in personalization["to"]], subject=data["subject"],
        text=content["text/plain"], html=content["text/html"], headers=data["headers"],
        metadata=data["custom_args"], tags=data.get("categories", []),
        message_id_sent=personalization["custom_args"]["anymail_id"],
    )


def read_brevo(body: bytes) -> Received:
    data = json.loads(body)
    return Received(
        to=[address["email"] for address in data["to"]], subject=data["subject"], text=data["textContent"],
        html=data["htmlContent"], headers=data["headers"], metadata=json.loads(data["headers"]["X-Mailin-custom"]),
        tags=data.get("tags", []),
    )


def read_mailjet(body: bytes) -> Received:
    data = json.loads(body)
    message = {**data["Globals"], **data["Messages"][0]}
    return Received(
        to=[address["Email"] for address in message["To"]], subject=message["Subject"], text=message["TextPart"],
        html=message["HTMLPart"], headers=message["Headers"], metadata=json.loads(message["EventPayload"]),
        tags=[message["CustomCampaign"]] if "CustomCampaign" in message else [],
    )


def read_resend(body: bytes) -> Received:
    data = json.loads(body)
    return Received(
        to=data["to"], subject=data["subject"], text=data["text"], html=data["html"], headers=data["headers"],
        metadata=json.loads(data["headers"]["X-Metadata"]), tags=json.loads(data["headers"].get("X-Tags", "[]")),
    )


def read_sparkpost(body: bytes) -> Received:
    data = json.loads(body)
    content = data["content"]
    return Received(
        to=[recipient["address"]["email"] for recipient in data["recipients"]], subject=content["subject"],
        text=content["text"], html=content["html"], headers=content["headers"], metadata=data["metadata"],
        tags=[data["campaign_id"]] if "campaign_id" in data else [],
    )


def read_amazon_ses(body: bytes) -> Received:
    data = json.loads(body)
    message = email.message_from_bytes(base64.b64decode(data["Content"]["Raw"]["Data"]), policy=email.policy.default)
    return Received(
        to=data["Destination"]["ToAddresses"], subject=message["Subject"],
        text=message.get_body(("plain",)).get_content(), html=message.get_body(("html",)).get_content(),
        # (a long header is folded onto its next line: the space before the value is not part of it)
        headers={name: str(value).strip() for name, value in message.items()}, metadata=json.loads(message["X-Metadata"]),
        # SES's own Message Tag (AMAZON_SES_MESSAGE_TAG_NAME), as CloudWatch sees it.
        tags=[tag["Value"] for tag in data.get("EmailTags", [])],
    )


ESPS = [
    Esp(
        "Mailgun", "anymail.backends.mailgun.EmailBackend",
        {"MAILGUN_API_KEY": "key-fake", "MAILGUN_SENDER_DOMAIN": "mg.mooc.example.org"},
        "https://api.mailgun.net/v3/mg.mooc.example.org/messages", 200,
        '{"id": "<20160306015544.116301.25145@example.com>", "message": "Queued. Thank you."}',
        "<20160306015544.116301.25145@example.com>", read_mailgun,
    ),
    Esp(
        "Amazon SES", "anymail.backends.amazon_ses.EmailBackend",
        {"AMAZON_SES_MESSAGE_TAG_NAME": "email"},
        "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails", 200,
        '{"MessageId": "1111111111111111-bbbbbbbb-3333-7777-aaaa-eeeeeeeeeeee-000000"}',
        "1111111111111111-bbbbbbbb-3333-7777-aaaa-eeeeeeeeeeee-000000", read_amazon_ses,
        environment={"AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "fake", "AWS_DEFAULT_REGION": "us-east-1"},
    ),
    Esp(
        "Postmark", "anymail.backends.postmark.EmailBackend",
        {"POSTMARK_SERVER_TOKEN": "fake-server-token", "POSTMARK_MESSAGE_STREAM": "broadcast"},
        "https://api.postmarkapp.com/email", 200,
        '{"To": "{to}", "SubmittedAt": "2016-03-12T15:27:50.4468803-05:00",'
        ' "MessageID": "b4007d94-33f1-4e78-a783-97417d6c80e6", "ErrorCode": 0, "Message": "OK"}',
        "b4007d94-33f1-4e78-a783-97417d6c80e6", read_postmark,
    ),
    Esp(
        "SendGrid", "anymail.backends.sendgrid.EmailBackend", {"SENDGRID_API_KEY": "SG.fake"},
        "https://api.sendgrid.com/v3/mail/send", 202, "", None, read_sendgrid,
    ),
    Esp(
        "Brevo", "anymail.backends.brevo.EmailBackend", {"BREVO_API_KEY": "xkeysib-fake"},
        "https://api.brevo.com/v3/smtp/email", 201,
        '{"messageId": "<201801020304.1234567890@smtp-relay.mailin.fr>"}',
        "<201801020304.1234567890@smtp-relay.mailin.fr>", read_brevo,
    ),
    Esp(
        "Mailjet", "anymail.backends.mailjet.EmailBackend", {"MAILJET_API_KEY": "fake", "MAILJET_SECRET_KEY": "fake"},
        "https://api.mailjet.com/v3.1/send", 200,
        '{"Messages": [{"Status": "success", "To": [{"Email": "{to}", "MessageUUID": "cb927469-36fd-4c02-bce4-0d199929a207",'
        ' "MessageID": 70650219165027410, "MessageHref": "https://api.mailjet.com/v3/message/70650219165027410"}]}]}',
        "70650219165027410", read_mailjet,
    ),
    Esp(
        "Resend", "anymail.backends.resend.EmailBackend", {"RESEND_API_KEY": "re_fake"},
        "https://api.resend.com/emails", 200, '{"id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}',
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", read_resend,
    ),
    Esp(
        "SparkPost", "anymail.backends.sparkpost.EmailBackend", {"SPARKPOST_API_KEY": "fake"},
        "https://api.sparkpost.com/api/v1/transmissions/", 200,
        '{"results": {"id": "12345678901234567890", "total_accepted_recipients": 1, "total_rejected_recipients": 0}}',
        "12345678901234567890", read_sparkpost,
    ),
]


# --- Intercepting the call ---------------------------------------------------------------------------


class _RawAnswer:
    """The body of an answer, as botocore reads it from the connection."""

    def __init__(self, content: bytes):
        self.content = content

    def stream(self):
        yield self.content


@contextlib.contextmanager
def intercepted(esp: Esp, settings, answer: str, status: int | None = None) -> Iterator[list[tuple[str, bytes]]]:
    """Answer every call to the ESP with `answer` (and `status`, else the ESP's success status);
    yields the (url, body) of each call made."""
    status = esp.status if status is None else status
    calls: list[tuple[str, bytes]] = []
    if esp.name == "Amazon SES":  # boto3, not requests: botocore's own hook just before it sends
        import botocore.session
        from botocore.awsrequest import AWSResponse

        def answer_send_email(request, **kwargs):
            calls.append((request.url, request.body))
            return AWSResponse(request.url, status, {"Content-Type": "application/json"}, _RawAnswer(answer.encode()))

        session = botocore.session.Session()
        session.register("before-send.sesv2.SendEmail", answer_send_email)
        settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_SESSION_PARAMS": {"botocore_session": session}}
        yield calls
        return
    # Any other address is refused (a connection error), so the row would not be SENT.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(esp.url, body=answer, status=status, content_type="application/json")
        yield calls
        for call in mock.calls:
            body = call.request.body
            calls.append((call.request.url, body if isinstance(body, bytes) else body.encode()))


def esp_named(name: str) -> Esp:
    return next(esp for esp in ESPS if esp.name == name)


def esp_use(esp: Esp, settings, monkeypatch, tmp_path) -> Esp:
    """Send through the ESP's backend with its settings, in place of whatever backend was set before."""
    settings.EMAIL_BACKEND = esp.backend
    settings.ANYMAIL = dict(esp.anymail)
    settings.DEFAULT_FROM_EMAIL = "Mechanical MOOC <course@mooc.example.org>"  # as in the README
    # boto3 sees only the ESP's own AWS_* variables: none of this machine's, and no AWS files.
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    for name, value in esp.environment.items():
        monkeypatch.setenv(name, value)
    return esp
