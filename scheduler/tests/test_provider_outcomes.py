"""Every row of the outcome table (scheduler/providers.py), through real backends: one send pass
for a learner's week 1, the provider answering one way, then what that left behind: the ledger
row, the learner, the suppression list, the cohort's sending and /healthz.

- Anymail: Mailgun's and Postmark's own backends, the HTTP call answered by `responses` with
  the bodies those ESPs send; answers about the connection itself (refused, no answer in time)
  come from real local sockets.
- SMTP: Django's SMTP backend talking to a real aiosmtpd server on 127.0.0.1, whose answer at
  each step (MAIL, RCPT, DATA, AUTH) the test sets.
"""

import datetime
import email
import email.policy
import logging
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from cohorts.models import Cohort
from cohorts.services import cohort_sending_pause
from scheduler.ledger import Reason, Status
from signups.models import Enrollment, Learner, Suppression, email_digest

from scheduler.tests.esps import esp_named, esp_use, intercepted
from scheduler.tests.helpers import BEFORE_START, START, at, closed_port, learner_in, run_pass, silent_port, weekly

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]

PASS = at(START, 10)  # week 1 fell due at 09:00 in Lisbon, the learner's zone
RECIPIENT = "zoe@example.org"


@dataclass(frozen=True)
class Consequence:
    """One row of the table: what an answer leaves behind."""

    name: str
    status: str
    reason_code: str
    attempts: int  # a call our side's fault made impossible does not count as an attempt
    refused: bool = False  # the address suppressed, the learner unsubscribed
    paused: bool = False  # the cohort's sending paused itself

    def __repr__(self):
        return self.name


SENT = Consequence("sent", Status.SENT, Reason.NONE, 1)
RETRY = Consequence("transient", Status.PENDING, Reason.RETRYING, 1)
REFUSED = Consequence("refused", Status.FAILED, Reason.REFUSED, 1, refused=True)
CONFIGURATION = Consequence("configuration", Status.PENDING, Reason.CONFIGURATION, 0, paused=True)
AMBIGUOUS = Consequence("ambiguous", Status.FAILED, Reason.AMBIGUOUS, 1)



@pytest.fixture
def at_the_pass(clock):
    """The clock at the pass's moment, so that /healthz looks at the world the pass left."""
    clock.move_to(PASS)


def assert_left_behind(expected: Consequence, enrollment, client, says: str):
    """The row, the learner, the suppression list, the cohort and /healthz after one pass;
    `says` is a piece of the provider's answer that the row's reason (and a pause's) must quote."""
    row = weekly(enrollment.cohort, 1).get()
    assert (row.status, row.reason_code, row.attempts) == (expected.status, expected.reason_code, expected.attempts), row.reason
    assert says in row.reason
    if expected is RETRY:  # the first retry waits half a minute to a minute (jittered backoff)
        assert PASS + datetime.timedelta(seconds=30) <= row.next_attempt_at <= PASS + datetime.timedelta(seconds=60)
    else:
        assert row.next_attempt_at is None

    learner = Learner.objects.get(pk=enrollment.learner_id)
    enrollment.refresh_from_db()
    suppressed = list(Suppression.objects.values_list("email_digest", "reason"))
    if expected.refused:
        # Mail stops; the learner keeps their place until the address is fixed (signups/suppressions.py).
        assert (learner.unsubscribed_at, learner.unsubscribed_reason, enrollment.status) == (
            PASS, Suppression.Reason.REFUSED, Enrollment.Status.ACTIVE
        )
        assert suppressed == [(email_digest(RECIPIENT), Suppression.Reason.REFUSED)]
    else:
        assert (learner.unsubscribed_at, enrollment.status) == (None, Enrollment.Status.ACTIVE)
        assert suppressed == []

    cohort = Cohort.objects.get(pk=enrollment.cohort_id)
    deliveries = client.get("/healthz").json()["deliveries"]
    if expected.paused:
        assert cohort.sending_paused and says in cohort.sending_paused_reason
        assert RECIPIENT not in cohort.sending_paused_reason  # /healthz is public
        assert deliveries == {"ok": False, "overdue": 0, "paused_by_fault": [cohort.slug]}
    else:
        assert (cohort.sending_paused, cohort.sending_paused_reason) == (False, "")
        assert deliveries == {"ok": True, "overdue": 0, "paused_by_fault": []}


# --- Anymail, over HTTP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str  # {to} is the recipient
    expected: Consequence
    says: str  # what of it the row's reason quotes


MAILGUN_ACCEPTED = esp_named("Mailgun").answer
POSTMARK_ACCEPTED = esp_named("Postmark").answer
POSTMARK_INACTIVE = (
    "Found inactive addresses: {to}. Inactive recipients are ones that have generated a hard bounce, a spam complaint, "
    "or a manual suppression."
)

HTTP_ANSWERS = {
    "Mailgun": {
        "accepted": HttpAnswer(200, MAILGUN_ACCEPTED, SENT, ""),
        "429 too many requests": HttpAnswer(429, '{"message": "Too many requests"}', RETRY, "Too many requests"),
        "503 unavailable": HttpAnswer(503, '{"message": "Service Unavailable"}', RETRY, "API response 503"),
        "400 bad sender": HttpAnswer(
            400, '{"message": "\'from\' parameter is not a valid address. please check documentation"}', CONFIGURATION,
            "'from' parameter is not a valid address",
        ),
        "401 bad API key": HttpAnswer(401, "Forbidden", CONFIGURATION, "API response 401 (Unauthorized): 'Forbidden'"),
        "404 unknown sending domain": HttpAnswer(404, '{"message": "Domain not found: mg.mooc.example.org"}', CONFIGURATION,
                                                 "Unknown sender domain"),
        "500 server error": HttpAnswer(500, '{"message": "Internal Server Error"}', AMBIGUOUS, "API response 500"),
        "502 bad gateway": HttpAnswer(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", AMBIGUOUS, "API response 502"),
        # Mailgun refuses no recipient when it takes the call: a bad address bounces later (events).
    },
    "Postmark": {
        "accepted": HttpAnswer(200, POSTMARK_ACCEPTED, SENT, ""),
        "429 too many requests": HttpAnswer(429, '{"ErrorCode": 0, "Message": "Rate limit exceeded"}', RETRY, "Rate limit exceeded"),
        "503 unavailable": HttpAnswer(503, "Service Unavailable", RETRY, "API response 503"),
        "422 sender signature": HttpAnswer(
            422, '{"ErrorCode": 400, "Message": "The \'From\' address you supplied (course@mooc.example.org) is not a Sender'
            ' Signature on your account. Please add and confirm this address in order to be able to use it in the'
            ' \'From\' field of your messages."}', CONFIGURATION, "is not a Sender Signature on your account",
        ),
        "401 bad server token": HttpAnswer(
            401, '{"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}', CONFIGURATION,
            "Request does not contain a valid Server token",
        ),
        "500 server error": HttpAnswer(500, '{"ErrorCode": 0, "Message": "Internal Server Error"}', AMBIGUOUS, "API response 500"),
        "502 bad gateway": HttpAnswer(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", AMBIGUOUS, "API response 502"),
        # AnymailRecipientsRefused: the whole call refused for an inactive recipient (422, ErrorCode
        # 406), or taken with that recipient left out (200, ErrorCode 0).
        "422 inactive recipient": HttpAnswer(
            422, '{"ErrorCode": 406, "Message": "You tried to send to recipient(s) that have been marked as inactive. '
            + POSTMARK_INACTIVE + '"}', REFUSED, "All message recipients were rejected or invalid",
        ),
        "200 but the recipient inactive": HttpAnswer(
            200, '{"To": "{to}", "SubmittedAt": "2016-03-12T15:27:50.4468803-05:00", "MessageID": "", "ErrorCode": 0,'
            ' "Message": "Message OK, but will not deliver to these inactive addresses: {to}. Inactive recipients are ones'
            ' that have generated a hard bounce or a spam complaint."}', REFUSED, "All message recipients were rejected or invalid",
        ),
    },
}


@pytest.fixture
def anymail_esp(request, provider, settings, monkeypatch, tmp_path):
    """The ESP named by the test's `esp_name`, in place of the test provider; calls time out fast."""
    esp = esp_use(esp_named(request.getfixturevalue("esp_name")), settings, monkeypatch, tmp_path)
    settings.ANYMAIL = {**settings.ANYMAIL, "REQUESTS_TIMEOUT": 0.3}
    return esp


@pytest.mark.parametrize(
    "esp_name, answer",
    [(esp, answer) for esp, answers in HTTP_ANSWERS.items() for answer in answers.values()],
    ids=[f"{esp}: {name} -> {answer.expected!r}" for esp, answers in HTTP_ANSWERS.items() for name, answer in answers.items()],
)
def test_each_http_answer_of_anymail(esp_name, answer, anymail_esp, zoe, at_the_pass, settings, client):
    with intercepted(anymail_esp, settings, answer.body.replace("{to}", RECIPIENT), status=answer.status) as calls:
        run_pass(PASS)

    [(url, body)] = calls  # one call: nothing is tried twice within a pass
    assert url == anymail_esp.url and anymail_esp.read(body).to == [RECIPIENT]
    assert_left_behind(answer.expected, zoe, client, answer.says)
    if answer.expected is SENT:
        assert weekly(zoe.cohort, 1).get().provider_message_id == anymail_esp.message_id


def _api_url_setting(esp_name: str) -> str:
    return f"{esp_name.upper()}_API_URL"  # MAILGUN_API_URL, POSTMARK_API_URL


@pytest.mark.parametrize("esp_name", ["Mailgun", "Postmark"])
def test_a_connection_refused_before_the_request_left_is_retried(esp_name, anymail_esp, zoe, at_the_pass, settings, client):
    settings.ANYMAIL = {**settings.ANYMAIL, _api_url_setting(esp_name): f"http://127.0.0.1:{closed_port()}/"}

    run_pass(PASS)

    assert_left_behind(RETRY, zoe, client, "Connection refused")


@pytest.mark.parametrize("esp_name", ["Mailgun", "Postmark"])
def test_no_answer_in_time_after_the_request_left_is_ambiguous(esp_name, anymail_esp, zoe, at_the_pass, settings, client):
    with silent_port() as port:  # takes the request, never answers: the read times out (REQUESTS_TIMEOUT)
        settings.ANYMAIL = {**settings.ANYMAIL, _api_url_setting(esp_name): f"http://127.0.0.1:{port}/"}
        run_pass(PASS)

    assert_left_behind(AMBIGUOUS, zoe, client, "Read timed out")


# --- An answer never seen ----------------------------------------------------------------------------


class ProviderLibraryError(Exception):
    """Something a provider's library raises that nobody has met before."""


def assert_logged_with_the_row(caplog, row, says: str):
    [record] = [record for record in caplog.records if record.name == "scheduler.sending"]
    assert record.levelno == logging.WARNING
    assert f"Delivery {row.pk}:" in record.getMessage() and says in record.getMessage()


@pytest.mark.parametrize("esp_name", ["Mailgun"])
def test_an_exception_never_seen_is_logged_with_the_row_and_ambiguous_never_refused(
    esp_name, anymail_esp, zoe, at_the_pass, client, caplog, monkeypatch
):
    def post_to_esp(self, payload, message):
        raise ProviderLibraryError("the provider's library broke in a new way")

    monkeypatch.setattr("anymail.backends.mailgun.EmailBackend.post_to_esp", post_to_esp)
    caplog.set_level(logging.WARNING, logger="scheduler.sending")

    run_pass(PASS)

    says = "ProviderLibraryError: the provider's library broke in a new way"
    assert_logged_with_the_row(caplog, weekly(zoe.cohort, 1).get(), says)
    assert_left_behind(AMBIGUOUS, zoe, client, says)


@pytest.mark.parametrize("esp_name", ["Mailgun"])
def test_a_success_status_with_an_answer_never_seen_is_ambiguous(esp_name, anymail_esp, zoe, at_the_pass, settings, client, caplog):
    caplog.set_level(logging.WARNING, logger="scheduler.sending")

    with intercepted(anymail_esp, settings, '{"id": "<1@mg.example.org>", "message": "Accepted for later review"}'):
        run_pass(PASS)

    says = "Unrecognized Mailgun API message 'Accepted for later review'"
    assert_logged_with_the_row(caplog, weekly(zoe.cohort, 1).get(), says)
    assert_left_behind(AMBIGUOUS, zoe, client, says)


# --- SMTP, with a real local server ------------------------------------------------------------------

DROP = "drop the connection without answering"


class SmtpServer:
    """aiosmtpd's handler: accepts everything unless told otherwise. `answers[step]` holds the
    answers for the next messages at that step (MAIL, RCPT or DATA), first one first; DROP at
    DATA hangs up after the whole message arrived, before answering. `received` keeps each
    message accepted, with the recipients of its envelope."""

    def __init__(self):
        self.answers: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA": []}
        self.received: list[tuple[list[str], email.message.EmailMessage]] = []

    def _answer(self, step: str) -> str | None:
        return self.answers[step].pop(0) if self.answers[step] else None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if answer := self._answer("MAIL"):
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if answer := self._answer("RCPT"):
            return answer
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        answer = self._answer("DATA")
        if answer == DROP:
            server.transport.close()  # what aiosmtpd answers next goes nowhere
            return "421 unheard"
        if answer:
            return answer
        self.received.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 2.0.0 Queued"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        return AuthResult(success=False, handled=False)  # 535 5.7.8 Authentication credentials invalid


@pytest.fixture
def smtp(provider, settings):
    """A real SMTP server on 127.0.0.1 and Django's SMTP backend pointed at it, in place of the test provider."""
    server = SmtpServer()
    port = closed_port()  # free a moment ago: the server takes it
    controller = Controller(server, hostname="127.0.0.1", port=port, authenticator=server.authenticate, auth_require_tls=False)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.DEFAULT_FROM_EMAIL = "Mechanical MOOC <course@mooc.example.org>"
    yield server
    controller.stop()


@dataclass(frozen=True)
class SmtpAnswer:
    step: str  # MAIL, RCPT or DATA; "" accepts all
    answer: str
    expected: Consequence
    says: str


SMTP_ANSWERS = {
    "250 accepted": SmtpAnswer("", "", SENT, ""),
    "451 on RCPT": SmtpAnswer("RCPT", "451 4.3.0 Mailbox temporarily unavailable, try again later", RETRY,
                              "Mailbox temporarily unavailable"),
    "451 after DATA": SmtpAnswer("DATA", "451 4.3.0 Local error in processing, try again later", RETRY,
                                 "Local error in processing"),
    "451 on MAIL FROM": SmtpAnswer("MAIL", "451 4.7.1 Greylisted, please try again later", RETRY, "Greylisted"),
    "550 on RCPT": SmtpAnswer("RCPT", f"550 5.1.1 <{RECIPIENT}>: Recipient address rejected: User unknown", REFUSED,
                              "User unknown"),
    "554 5.7.1 relaying denied on RCPT": SmtpAnswer("RCPT", f"554 5.7.1 <{RECIPIENT}>: Relay access denied", CONFIGURATION,
                                                    "Relay access denied"),
    "553 sender refused": SmtpAnswer("MAIL", "553 5.7.1 <course@mooc.example.org>: Sender address rejected: not owned by user",
                                     CONFIGURATION, "Sender address rejected"),
    "530 authentication required": SmtpAnswer("MAIL", "530 5.7.0 Authentication required", CONFIGURATION,
                                              "Authentication required"),
    "554 after DATA": SmtpAnswer("DATA", "554 5.6.0 Message refused: malformed headers", CONFIGURATION, "malformed headers"),
    "dropped mid-DATA": SmtpAnswer("DATA", DROP, AMBIGUOUS, "SMTPServerDisconnected"),
    "299 after DATA (never seen)": SmtpAnswer("DATA", "299 2.0.0 Something new", AMBIGUOUS, "Something new"),
}


@pytest.mark.parametrize(
    "answer", SMTP_ANSWERS.values(), ids=[f"{name} -> {answer.expected!r}" for name, answer in SMTP_ANSWERS.items()]
)
def test_each_smtp_answer(answer, smtp, zoe, at_the_pass, client):
    if answer.step:
        smtp.answers[answer.step].append(answer.answer)

    run_pass(PASS)

    assert_left_behind(answer.expected, zoe, client, answer.says)
    if answer.expected is SENT:
        [(recipients, message)] = smtp.received
        assert recipients == [RECIPIENT] and message["To"] == RECIPIENT and message["Subject"] == f"We begin: week 1 of {zoe.cohort.course.title}"
    else:
        assert smtp.received == []


def test_smtp_credentials_refused_pause_the_cohort(smtp, zoe, at_the_pass, settings, client):
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "course", "an old password"

    run_pass(PASS)

    assert_left_behind(CONFIGURATION, zoe, client, "Authentication credentials invalid")
    assert smtp.received == []


def test_an_smtp_server_that_is_down_is_retried(smtp, zoe, at_the_pass, settings, client):
    settings.EMAIL_PORT = closed_port()

    run_pass(PASS)

    assert_left_behind(RETRY, zoe, client, "Connection refused")


def test_after_a_connection_dropped_mid_message_the_next_learner_is_sent_on_a_new_one(smtp, cohort, at_the_pass):
    first, second = learner_in(cohort, email="ada@example.org"), learner_in(cohort, email="bob@example.org")
    smtp.answers["DATA"].append(DROP)  # the first message of the pass

    run_pass(PASS)

    rows = {row.learner_id: row for row in weekly(cohort, 1)}
    [(recipients, _)] = smtp.received  # on a new connection
    sent, dropped = (second, first) if recipients == ["bob@example.org"] else (first, second)
    assert (rows[dropped.learner_id].status, rows[dropped.learner_id].reason_code) == (Status.FAILED, Reason.AMBIGUOUS)
    assert (rows[sent.learner_id].status, rows[sent.learner_id].reason_code) == (Status.SENT, Reason.NONE)


def test_after_a_fault_on_our_side_is_fixed_the_email_goes_out_once(smtp, zoe, at_the_pass, clock):
    smtp.answers["MAIL"].append("553 5.7.1 <course@mooc.example.org>: Sender address rejected: not owned by user")
    run_pass(PASS)
    assert smtp.received == []

    cohort_sending_pause(zoe.cohort, False)  # an organizer fixed the sender and resumes
    later = PASS + datetime.timedelta(minutes=5)
    clock.move_to(later)
    run_pass(later)
    run_pass(later + datetime.timedelta(minutes=5))

    row = weekly(zoe.cohort, 1).get()
    assert (row.status, row.attempts) == (Status.SENT, 1)
    assert [recipients for recipients, _ in smtp.received] == [[RECIPIENT]]
