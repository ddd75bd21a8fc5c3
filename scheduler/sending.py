"""Sending one chunk of the ledger, each email exactly once (see scheduler/ledger.py for the rows'
states and scheduler/providers.py for what each provider answer means).

- **Claim**: the chunk's ready rows are taken with one UPDATE (ledger.rows_claim); rows due
  before the catch-up window are skipped first. Everything the chunk needs is then loaded in a
  fixed number of queries; each learner is checked to be still mailable (not paused, left,
  switched, unsubscribed or erased) and each email rendered (scheduler/sandbox.py bounds a
  render: one that breaks a limit fails that learner's row, and the chunk goes on).
- **The provider call** is bracketed by two writes, both guarded by the claim: `provider_call_at`
  just before (which also renews the claim's lease), the outcome just after. A worker killed in
  between leaves a row that may have been sent: reclaiming marks it FAILED as ambiguous and it
  is never re-sent by itself (a duplicate is worse than a gap an organizer can see). To spend one
  statement and one commit per email rather than two, row N's "sent" is written in the same
  UPDATE as row N+1's "calling" (ledger.row_sent_then_calling); a kill before it commits costs
  only row N, which becomes ambiguous, and one after it only row N+1.
- **The connection** to the provider is one per chunk, opened by the first call: Django's SMTP
  backend connects and logs in then, so a server that is down or refuses our login is that
  row's outcome (nothing has left yet). After a failed call it is closed, and the next row
  opens a new one rather than meet a half-closed one.
- **Outcomes** (providers.outcome_of): transient errors retry with a jittered exponential
  backoff up to DELIVERY_MAX_ATTEMPTS; a refused address fails the row and suppresses the
  address; a fault on our side pauses the cohort's sending with the reason and gives its rows
  back, unsent and unsuppressed; an ambiguous answer (or one never seen) fails the row as
  ambiguous.
- **Out of time**: Celery's soft time limit (SoftTimeLimitExceeded) is never swallowed. The rows
  the chunk still holds follow the same rule at once (ambiguous if their call may have started,
  else back to PENDING) and the exception propagates.
- **A week with no template yet** is not ready: its rows go back to PENDING to be tried again
  every TEMPLATE_WAIT, until the catch-up window closes (then SKIPPED with that reason).
"""

import datetime
import logging
import random
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.utils import timezone

from cohorts.selectors import course_week
from cohorts.services import cohort_sending_pause_for_fault
from scheduler import ledger
from scheduler.ledger import Reason, Status
from scheduler.models import Delivery, EmailKind
from scheduler.providers import Outcome, error_describe, outcome_of
from scheduler.rate_limit import provider_rate_wait
from scheduler.selectors import email_contexts, email_template_for, week_context
from scheduler.services import delivery_header, email_render
from scheduler.tracking import delivery_metadata, delivery_tag
from signups.models import Enrollment
from signups.selectors import enrollments_current_of
from signups.services import learner_address_refused

logger = logging.getLogger(__name__)

TEMPLATE_WAIT = datetime.timedelta(minutes=10)

# Emails staff did not write (a group member's message, relayed): no template; the app that
# received them builds each copy, from the batch's rows and their current enrollments, as a
# message or as the reason this member no longer gets it. groupmail fills this when it starts
# (groupmail/apps.py): the scheduler never imports the apps above it.
RelayedEmailBuilder = Callable[[list[tuple[Delivery, Enrollment]], datetime.datetime], dict[int, EmailMessage | str]]
RELAYED_EMAIL_BUILDERS: dict[str, RelayedEmailBuilder] = {}


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retrying: int = 0
    released: int = 0  # given back unsent: a fault on our side, or no template yet


def _retry_delay(attempts: int) -> datetime.timedelta:
    """Exponential backoff with full jitter: up to 1, 2, 4 ... minutes, capped at TASK_RETRY_MAX_DELAY."""
    ceiling = min(60 * 2 ** (attempts - 1), settings.TASK_RETRY_MAX_DELAY)
    return datetime.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _message(row: Delivery, rendered, reply_to: str = "") -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=rendered.subject, body=rendered.text, to=[row.learner.email], headers=rendered.headers,
        reply_to=[reply_to] if reply_to else None,
    )
    message.attach_alternative(rendered.html, "text/html")
    return _tracked(row, message)


def _tracked(row: Delivery, message: EmailMessage) -> EmailMessage:
    # Anymail sends these to the provider; its tracking webhooks bring them back. One tag:
    # Postmark, Mailjet and SparkPost refuse a second (see scheduler/tracking.py).
    message.metadata = delivery_metadata(row)
    message.tags = [delivery_tag(row.cohort.course.slug, row.kind, row.week_number)]
    return message


def eligibility_problem(enrollment: Enrollment | None) -> str | None:
    if enrollment is None:
        return "the learner is no longer in this cohort (left or switched)"
    learner = enrollment.learner
    if learner.unsubscribed_at is not None:
        return "the learner unsubscribed"
    if learner.confirmed_at is None:
        return "the learner has not confirmed"
    if enrollment.status == Enrollment.Status.PAUSED:
        return "the learner paused their emails"
    if enrollment.status != Enrollment.Status.ACTIVE:
        return f"the enrollment is {enrollment.get_status_display().lower()}"
    return None


class _Chunk:
    """One claimed chunk in progress: its claim, the pass's moment, the report, and the one
    outcome not yet written (row N's "sent", which goes out with row N+1's "calling")."""

    def __init__(self, claim: uuid.UUID, now: datetime.datetime):
        self.claim, self.now, self.report = claim, now, SendReport()
        self._started = time.monotonic()
        self._sent: tuple[int, str] | None = None

    def moment(self) -> datetime.datetime:
        """The pass's `now` moved on by the time spent: the claim's lease is renewed with it."""
        return self.now + datetime.timedelta(seconds=time.monotonic() - self._started)

    def flush(self) -> None:
        if self._sent is not None:
            pk, message_id = self._sent
            self._sent = None
            self._sent_written(pk, ledger.row_sent(pk, self.claim, self.now, message_id))

    def calling(self, pk: int) -> bool:
        """Whether `pk` is still ours, now marked as in its provider call (the outcome held back
        is written in the same statement)."""
        if self._sent is None:
            return ledger.row_calling(pk, self.claim, self.moment())
        (sent_pk, message_id), self._sent = self._sent, None
        sent, calling = ledger.row_sent_then_calling(sent_pk, self.now, message_id, pk, self.moment(), self.claim)
        self._sent_written(sent_pk, sent)
        return calling

    @staticmethod
    def _sent_written(pk: int, written: bool) -> None:
        if not written:
            logger.warning("Delivery %s was sent, but reclaimed meanwhile: left as the reclaim decided", pk)

    def sent(self, pk: int, message_id: str) -> None:
        self._sent = (pk, message_id)
        self.report.sent += 1


def deliveries_send(ids: list[int], now: datetime.datetime | None = None) -> SendReport:
    """Send one chunk of ledger rows. Safe to run twice or concurrently: only rows this call
    claims are sent. Raises SoftTimeLimitExceeded after settling the rows it still holds."""
    now = now or timezone.now()
    too_late = ledger.rows_skip_too_late(ids, now)
    claim = ledger.rows_claim(ids, now)
    if claim is None:
        return SendReport(skipped=too_late)
    chunk = _Chunk(claim, now)
    chunk.report.skipped += too_late
    try:
        _chunk_send(chunk)
        chunk.flush()
    except SoftTimeLimitExceeded:
        chunk.flush()
        ambiguous = ledger.rows_ambiguous(claim)
        returned = ledger.rows_release(claim, Reason.OUT_OF_TIME, "the chunk ran out of time (soft time limit) before this one; sent again")
        logger.warning("Out of time: stopped a chunk; %d rows back to pending, %d interrupted during the provider call", returned, ambiguous)
        raise
    return chunk.report


def _chunk_send(chunk: _Chunk) -> None:
    rows = list(Delivery.objects.filter(claim=chunk.claim, status=Status.SENDING).select_related("cohort__course", "learner"))
    enrollments = enrollments_current_of({row.learner_id for row in rows}, {row.cohort_id for row in rows})
    by_email: dict[tuple, list[tuple[Delivery, Enrollment]]] = defaultdict(list)
    for row in rows:
        enrollment = enrollments.get((row.learner_id, row.cohort_id))
        problem = eligibility_problem(enrollment)
        if problem:
            ledger.row_end(row.pk, chunk.claim, Status.SKIPPED, Reason.NOT_MAILABLE, problem)
            chunk.report.skipped += 1
        else:
            by_email[(row.cohort, row.kind, row.week_number)].append((row, enrollment))
    mail_connection = get_connection()  # one connection to the provider for the whole chunk, opened by its first call
    try:
        for (cohort, kind, week_number), batch in by_email.items():
            _send_batch(mail_connection, chunk, cohort, kind, week_number, batch)
    finally:
        _connection_close(mail_connection)


def _connection_close(connection) -> None:
    """Close it, whatever state a failed call left it in (an SMTP server that hung up mid-message):
    the outcomes are written already, and the next call opens a new one."""
    try:
        connection.close()
    except Exception as error:
        logger.info("Closing the connection to the provider failed: %s", error_describe(error))


def _send_batch(connection, chunk: _Chunk, cohort, kind, week_number, batch) -> None:
    if kind in RELAYED_EMAIL_BUILDERS:
        _send_relayed(connection, chunk, cohort, kind, batch)
        return
    template = email_template_for(cohort, kind, week_number)
    if template is None:
        chunk.report.released += ledger.rows_release(
            chunk.claim, Reason.WAITING_FOR_TEMPLATE, "no email template for this email yet: tried again shortly",
            pks=[row.pk for row, _ in batch], next_attempt_at=chunk.now + TEMPLATE_WAIT,
        )
        return
    number = week_number if kind == EmailKind.WEEK else (cohort.week_count if kind == EmailKind.COURSE_END else 1)
    week = course_week(cohort.course, number)
    contexts = email_contexts(cohort, week_context(week, cohort.week_count) if week else None, [e for _, e in batch], chunk.now.date())
    for position, (row, enrollment) in enumerate(batch):
        try:
            rendered = email_render(template.current_version, contexts[enrollment.pk], delivery_header(kind, cohort.slug, week_number, row.pk))
            # Grouped learners reply to the weekly emails to reach their group (group mail on).
            message = _message(row, rendered, reply_to=contexts[enrollment.pk]["group"]["email"] if enrollment.group_id else "")
        except SoftTimeLimitExceeded:
            raise  # the chunk's time is up, not this learner's fault: deliveries_send settles the rows
        except Exception as error:  # one learner's bad render (a template limit, say) must not stop the chunk
            logger.exception("Could not render delivery %s", row.pk)
            ledger.row_end(row.pk, chunk.claim, Status.FAILED, Reason.RENDER_FAILED, f"the template failed for this learner: {error}")
            chunk.report.failed += 1
            continue
        if not _call_or_stop(connection, chunk, row, message, batch[position + 1 :]):
            return


def _send_relayed(connection, chunk: _Chunk, cohort, kind, batch) -> None:
    """Copies of messages someone else wrote (RELAYED_EMAIL_BUILDERS), each to one recipient."""
    built = RELAYED_EMAIL_BUILDERS[kind](batch, chunk.now)
    for position, (row, _) in enumerate(batch):
        message = built.get(row.pk, "the message it relays is gone (deleted with its round or its sender's data)")
        if isinstance(message, str):
            ledger.row_end(row.pk, chunk.claim, Status.SKIPPED, Reason.NOT_MAILABLE, message)
            chunk.report.skipped += 1
            continue
        message.extra_headers["X-Mooc-Delivery"] = delivery_header(kind, cohort.slug, row.week_number, row.pk)
        if not _call_or_stop(connection, chunk, row, _tracked(row, message), batch[position + 1 :]):
            return


def _call_or_stop(connection, chunk: _Chunk, row: Delivery, message, rest) -> bool:
    """Send one row's email; False when the rest of its batch must not be tried."""
    if _provider_call(connection, chunk, row, message) is Outcome.CONFIGURATION:
        # Every further email of this cohort would fail the same way: give them back unsent.
        chunk.report.released += ledger.rows_release(
            chunk.claim, Reason.CONFIGURATION, "not tried: sending paused after a fault on our side",
            pks=[later.pk for later, _ in rest],
        )
        return False
    return True


def _provider_call(connection, chunk: _Chunk, row: Delivery, message) -> Outcome | None:
    """Call the provider for one row and write the outcome (None: the row was no longer ours)."""
    # Only while the row is still ours: if a reclaim took it back (this worker was presumed
    # dead) another may be sending it now, and this call must not happen.
    if not chunk.calling(row.pk):
        logger.warning("Delivery %s was reclaimed while this worker held it; not sending", row.pk)
        return None
    provider_rate_wait()
    connecting = True
    try:
        # Once open, a no-op. Django's SMTP backend connects and logs in here, so a server that
        # is down or refuses our credentials is this row's outcome, and nothing has left yet.
        connection.open()
        connecting = False
        connection.send_messages([message])
    except SoftTimeLimitExceeded:
        raise  # the email may have left: deliveries_send marks this row ambiguous
    except Exception as error:
        outcome = outcome_of(error, connecting=connecting)
        _record_failure(chunk, row, outcome, error)
        _connection_close(connection)  # the next row starts on a new connection, not a half-closed one
        return outcome
    status = getattr(message, "anymail_status", None)
    chunk.sent(row.pk, str(status.message_id) if status is not None and status.message_id is not None else "")
    return Outcome.SENT


def _record_failure(chunk: _Chunk, row: Delivery, outcome: Outcome, error: Exception) -> None:
    detail, claim, report = error_describe(error), chunk.claim, chunk.report
    chunk.flush()
    match outcome:
        case Outcome.TRANSIENT if row.attempts < settings.DELIVERY_MAX_ATTEMPTS:
            ledger.row_retry(row.pk, claim, chunk.now + _retry_delay(row.attempts), f"attempt {row.attempts}: {detail}")
            report.retrying += 1
        case Outcome.TRANSIENT:
            ledger.row_end(row.pk, claim, Status.FAILED, Reason.GAVE_UP, f"gave up after {row.attempts} attempts: {detail}")
            report.failed += 1
        case Outcome.REFUSED:
            ledger.row_end(row.pk, claim, Status.FAILED, Reason.REFUSED, detail)
            report.failed += 1
            learner_address_refused(row.learner_id, chunk.now)
        case Outcome.CONFIGURATION:
            logger.error("Delivery %s: a fault on our side (%s); pausing the cohort's sending", row.pk, detail)
            report.released += ledger.row_not_sent(row.pk, claim, Reason.CONFIGURATION, detail)
            # The reason shows on the public /healthz: the provider's answer, without the learner's address.
            public = re.sub(re.escape(row.learner.email), "<the learner's address>", detail, flags=re.IGNORECASE)
            cohort_sending_pause_for_fault(row.cohort_id, f"The provider refused to send for a reason on our side: {public}")
        case _:
            logger.warning("Delivery %s: an answer that may or may not mean sent (%s): marked ambiguous", row.pk, detail)
            ledger.rows_ambiguous(claim, f"{ledger.AMBIGUOUS_DETAIL}. The provider's answer: {detail}", pks=[row.pk])
            report.failed += 1
