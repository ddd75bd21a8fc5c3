"""Raw messages as members' mail programs write them, for the tests."""

from email.message import EmailMessage
from email.utils import make_msgid


def raw_message(
    sender="Ada Lovelace <ada@example.org>", to="winter-3@groups.example.org", subject="Hello group", body="Hi all, Ada here.\n",
    headers: dict | None = None, attachments=(), html: str = "", message_id: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id or make_msgid(domain="example.org")
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
    for name, content, mimetype in attachments:
        maintype, subtype = mimetype.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()
