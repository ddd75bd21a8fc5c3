"""The outcome policy (scheduler/providers.py): each provider answer maps to one consequence.

The errors are raised by the real libraries where that is cheap (Anymail's Mailgun backend
against a closed port and against a server that never answers), and built the way the
libraries build them otherwise.
"""

import smtplib

import pytest
from anymail.exceptions import AnymailInvalidAddress, AnymailRecipientsRefused, AnymailUnsupportedFeature
from celery.exceptions import SoftTimeLimitExceeded

from scheduler.providers import Outcome, outcome_of
from scheduler.tests.helpers import closed_port, provider_error, silent_port


def mailgun_send_to(url: str, timeout: float = 2):
    """Send one email through Anymail's real Mailgun backend to `url`; the error it raises."""
    from anymail.backends.mailgun import EmailBackend
    from django.core.mail import EmailMessage

    backend = EmailBackend(api_key="key", api_url=url, requests_timeout=timeout)
    try:
        backend.send_messages([EmailMessage("Hi", "Body", "mooc@example.org", ["ada@example.org"])])
    except Exception as error:
        return error


def connection_refused():
    return mailgun_send_to(f"http://127.0.0.1:{closed_port()}/v3")


def read_timeout():
    """A server that accepts the request and never answers."""
    with silent_port() as port:
        return mailgun_send_to(f"http://127.0.0.1:{port}/v3", timeout=0.3)


@pytest.mark.parametrize(
    "make_error, outcome",
    [
        (lambda: provider_error(429, "Too Many Requests"), Outcome.TRANSIENT),
        (lambda: provider_error(503, "Service Unavailable"), Outcome.TRANSIENT),
        (connection_refused, Outcome.TRANSIENT),
        (lambda: smtplib.SMTPRecipientsRefused({"ada@example.org": (451, b"try again later")}), Outcome.TRANSIENT),
        (lambda: smtplib.SMTPDataError(451, b"try again later"), Outcome.TRANSIENT),
        (lambda: smtplib.SMTPSenderRefused(451, b"4.7.1 greylisted, try again later", "mooc@localhost"), Outcome.TRANSIENT),
        (lambda: smtplib.SMTPAuthenticationError(454, b"4.7.0 temporary authentication failure"), Outcome.TRANSIENT),
        (lambda: ConnectionRefusedError(111, "Connection refused"), Outcome.TRANSIENT),
        (lambda: AnymailRecipientsRefused("refused"), Outcome.REFUSED),
        (lambda: smtplib.SMTPRecipientsRefused({"ada@example.org": (550, b"no such user")}), Outcome.REFUSED),
        (lambda: smtplib.SMTPRecipientsRefused({"ada@example.org": (550, b"5.1.1 user unknown")}), Outcome.REFUSED),
        # 5.7.x on RCPT is about us (relaying denied, our server blocked), not about the address.
        (lambda: smtplib.SMTPRecipientsRefused({"ada@example.org": (554, b"5.7.1 <ada@example.org>: Relay access denied")}),
         Outcome.CONFIGURATION),
        (lambda: provider_error(400, "'from' parameter is not a valid address"), Outcome.CONFIGURATION),
        (lambda: provider_error(401, "Unauthorized"), Outcome.CONFIGURATION),
        (lambda: provider_error(403, "Forbidden"), Outcome.CONFIGURATION),
        (lambda: provider_error(422, "The 'From' address is not a confirmed Sender Signature"), Outcome.CONFIGURATION),
        (lambda: AnymailUnsupportedFeature("Postmark supports only a single tag"), Outcome.CONFIGURATION),
        (lambda: AnymailInvalidAddress("Invalid email address 'mooc@'"), Outcome.CONFIGURATION),
        (lambda: smtplib.SMTPAuthenticationError(535, b"bad credentials"), Outcome.CONFIGURATION),
        (lambda: smtplib.SMTPSenderRefused(553, b"sender not allowed", "mooc@localhost"), Outcome.CONFIGURATION),
        (lambda: smtplib.SMTPDataError(554, b"message refused"), Outcome.CONFIGURATION),
        (read_timeout, Outcome.AMBIGUOUS),
        (lambda: provider_error(500, "Internal Server Error"), Outcome.AMBIGUOUS),
        (lambda: provider_error(502, "Bad Gateway"), Outcome.AMBIGUOUS),
        (lambda: smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), Outcome.AMBIGUOUS),
        (lambda: SoftTimeLimitExceeded(), Outcome.AMBIGUOUS),
        (lambda: KeyError("something never seen"), Outcome.AMBIGUOUS),
    ],
    ids=lambda value: value.value if isinstance(value, Outcome) else "",
)
def test_each_answer_has_one_consequence(make_error, outcome):
    error = make_error()
    assert error is not None, "the library did not raise what the test expected"
    assert outcome_of(error) is outcome


def test_only_a_refused_recipient_is_ever_refused():
    """Whatever else goes wrong, it never suppresses an address."""
    sender_side = [provider_error(status, "x") for status in range(400, 600) if status not in (429, 503)]
    assert all(outcome_of(error) is not Outcome.REFUSED for error in sender_side)


@pytest.mark.parametrize(
    "error", [smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), TimeoutError("timed out"), KeyError("never seen")]
)
def test_nothing_is_ambiguous_while_connecting(error):
    """No email has left before the connection is open: what would be ambiguous is retried."""
    assert outcome_of(error) is Outcome.AMBIGUOUS
    assert outcome_of(error, connecting=True) is Outcome.TRANSIENT


def test_refused_credentials_while_connecting_are_still_a_fault_on_our_side():
    assert outcome_of(smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), connecting=True) is Outcome.CONFIGURATION


def test_errors_read_as_sentences_not_python_values():
    from scheduler.providers import error_describe

    refused = smtplib.SMTPRecipientsRefused({"nia@example.org": (550, b"5.1.1 <nia@example.org>: Recipient address rejected: User unknown")})
    assert error_describe(refused) == (
        "The mail server refused the recipient: nia@example.org (550 5.1.1 <nia@example.org>: Recipient address rejected: User unknown)."
    )
    assert error_describe(smtplib.SMTPDataError(554, b"5.7.1 Message\r\n rejected")) == "The mail server answered 554 5.7.1 Message rejected."
    assert error_describe(smtplib.SMTPSenderRefused(553, b"not ours", "mooc@localhost")) == (
        "The mail server refused our sender address mooc@localhost: 553 not ours."
    )
    assert error_describe(ConnectionRefusedError(111, "Connection refused")) == "ConnectionRefusedError: [Errno 111] Connection refused"
