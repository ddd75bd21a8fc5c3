"""What each answer of an email provider means for the learner and the round: one policy, here.

Every outcome of handing one email to Anymail (any ESP) or to Django's SMTP backend maps to
exactly one consequence:

| Outcome        | Examples                                                              | Consequence                                                          |
|----------------|-----------------------------------------------------------------------|----------------------------------------------------------------------|
| sent           | the provider accepted the message                                     | the row is SENT                                                      |
| transient      | HTTP 429 or 503; connection refused, DNS failure or connect timeout   | retried with backoff, up to DELIVERY_MAX_ATTEMPTS, then FAILED       |
|                | (the request never left); SMTP 4xx at any step (421, 450, 451, 452,   |                                                                      |
|                | 454); any other failure to connect to the SMTP server (no email left) |                                                                      |
| refused        | AnymailRecipientsRefused; SMTP 5xx on RCPT for this address (but not  | the row FAILED; the address is suppressed (the learner unsubscribed) |
|                | 5.7.x: see configuration)                                             |                                                                      |
| configuration  | any other HTTP 4xx (400, 401, 403, 404, 413, 422 ...); an unsupported | the row goes back to PENDING, nothing is suppressed, the cohort's    |
|                | feature; a bad sender or API key; SMTP 5xx to AUTH or MAIL FROM; SMTP | sending pauses itself with the reason (its admin page; /healthz      |
|                | 5xx for the message (DATA); SMTP 5.7.x on RCPT (relaying denied, our  | names it); organizers resume once it is fixed                        |
|                | server blocked: about us, not the address)                            |                                                                      |
| ambiguous      | a read timeout, HTTP 500/502/504 or a connection dropped after the    | the row FAILED as ambiguous, never re-sent automatically: an         |
|                | request went out; SMTP disconnect mid-message; the task's soft time   | organizer (or, later, the provider's events) decides                 |
|                | limit; anything never seen before                                     |                                                                      |

Only a refused recipient ever suppresses an address: a fault on our side never touches learners.
"""

import enum
import logging
import re
import smtplib

logger = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    REFUSED = "refused"
    CONFIGURATION = "configuration"
    AMBIGUOUS = "ambiguous"


# HTTP statuses that say the provider did not take the request, so sending again is safe.
_RETRY_STATUSES = frozenset({429, 503})


def _never_left(error: BaseException) -> bool:
    """Whether a connection error happened before any byte of the request reached the provider:
    the connection was refused, the name did not resolve, or connecting timed out."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    if isinstance(error, requests.ConnectTimeout):
        return True
    seen = set()
    pending = [error]
    while pending:  # the cause may sit in __cause__, __context__, args or urllib3's .reason
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, NameResolutionError, ConnectTimeoutError, ConnectionRefusedError)):
            return True
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return False


def outcome_of(error: BaseException, *, connecting: bool = False) -> Outcome:
    """The one consequence of a send that raised `error` (see the module's table).

    `connecting`: the error came while the connection was being opened (Django's SMTP backend
    connects and logs in then), so no email has left: what would be ambiguous is transient."""
    outcome = _outcome_of(error)
    return Outcome.TRANSIENT if connecting and outcome is Outcome.AMBIGUOUS else outcome


def _outcome_of(error: BaseException) -> Outcome:
    from anymail.exceptions import (
        AnymailAPIError,
        AnymailConfigurationError,
        AnymailInvalidAddress,
        AnymailRecipientsRefused,
        AnymailUnsupportedFeature,
    )
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(error, SoftTimeLimitExceeded):
        return Outcome.AMBIGUOUS
    if isinstance(error, AnymailRecipientsRefused):
        return Outcome.REFUSED
    if isinstance(error, (AnymailUnsupportedFeature, AnymailConfigurationError, AnymailInvalidAddress)):
        return Outcome.CONFIGURATION
    if isinstance(error, smtplib.SMTPException):
        return _smtp_outcome(error)
    if isinstance(error, (ConnectionError, TimeoutError, OSError)) and not isinstance(error, AnymailAPIError):
        # Django's SMTP backend, or a provider library below Anymail: refused before sending.
        return Outcome.TRANSIENT if _never_left(error) else Outcome.AMBIGUOUS
    if isinstance(error, AnymailAPIError):
        status = error.status_code
        if status is None:  # no answer: requests' error, wrapped by Anymail
            return Outcome.TRANSIENT if _never_left(error) else Outcome.AMBIGUOUS
        if status in _RETRY_STATUSES:
            return Outcome.TRANSIENT
        if 400 <= status < 500:
            return Outcome.CONFIGURATION
        return Outcome.AMBIGUOUS
    return Outcome.AMBIGUOUS


# An enhanced status code 5.7.x (RFC 3463: security or policy) on RCPT is about the sender:
# relaying denied, authentication needed, our address or server blocked.
_ABOUT_US = re.compile(rb"\s*5\.7\.\d{1,3}\b")


def _smtp_outcome(error: smtplib.SMTPException) -> Outcome:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = list(error.recipients.values())
        if not answers or not all(500 <= code < 600 for code, _ in answers):
            return Outcome.TRANSIENT
        if any(_ABOUT_US.match(text if isinstance(text, bytes) else str(text).encode()) for _, text in answers):
            return Outcome.CONFIGURATION
        return Outcome.REFUSED
    if isinstance(error, smtplib.SMTPResponseException) and 400 <= error.smtp_code < 500:
        return Outcome.TRANSIENT  # "try again later", whichever step says it (AUTH, MAIL FROM, DATA)
    if isinstance(error, (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused, smtplib.SMTPNotSupportedError)):
        return Outcome.CONFIGURATION
    if isinstance(error, smtplib.SMTPConnectError):
        return Outcome.TRANSIENT
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return Outcome.AMBIGUOUS  # it may have dropped after the message was taken
    if isinstance(error, smtplib.SMTPResponseException) and 500 <= error.smtp_code < 600:
        return Outcome.CONFIGURATION
    return Outcome.AMBIGUOUS


def _answer_text(message) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return " ".join(text.split())


def error_describe(error: BaseException) -> str:
    """An error as a sentence an organizer reads on the cohort's page (a failed row's reason):
    who refused, with the server's code and words, never Python's repr of them."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        refusals = [f"{address} ({code} {_answer_text(message)})" for address, (code, message) in error.recipients.items()]
        text = f"The mail server refused the recipient{'s' if len(refusals) != 1 else ''}: {'; '.join(refusals)}."
    elif isinstance(error, smtplib.SMTPSenderRefused):
        text = f"The mail server refused our sender address {error.sender}: {error.smtp_code} {_answer_text(error.smtp_error)}."
    elif isinstance(error, smtplib.SMTPResponseException):
        text = f"The mail server answered {error.smtp_code} {_answer_text(error.smtp_error)}."
    elif getattr(error, "status_code", None):  # an Anymail API error: the provider's HTTP answer
        text = f"The provider answered HTTP {error.status_code}: {_safe_str(error)}"
    else:
        text = f"{type(error).__name__}: {_safe_str(error)}"
    return text[:2000]


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # some provider errors cannot describe themselves without a response
        return repr(error)
