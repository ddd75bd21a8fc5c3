"""Sending the course's emails: what is due, the delivery ledger, and each send, exactly once.

The course has no teacher: this is the teacher, so it must never skip a week, never send one
twice, and never mail someone who left. How it keeps those promises:

- **Dispatch** (`deliveries_dispatch`, every minute from beat, or `manage.py send_due`) finds
  for every cohort the emails that fell due and have no ledger row yet, and inserts the rows
  in bulk. The unique (learner, cohort, kind, week) constraint makes a second insert a no-op,
  so two dispatchers at once create each row once. Ready PENDING rows are then queued in
  chunks, oldest due first.
- **Send** (`deliveries_send`, one chunk) first claims its rows with one atomic UPDATE
  (PENDING -> SENDING, with a claim id): of two workers given the same rows, each row goes to
  exactly one. It loads everything the chunk needs in a fixed number of queries, checks each
  learner is still mailable (not paused, left, switched, unsubscribed or erased), renders,
  and calls the provider on one reused connection.
- **The provider call** is bracketed by two writes: `provider_call_at` just before, the
  provider's message id and SENT just after. A worker killed in between leaves a SENDING row
  with `provider_call_at` set: the email may or may not have left. Such a row is *not* sent
  again automatically (a duplicate is worse than a gap an organizer can see): reclaiming marks
  it FAILED with AMBIGUOUS_REASON, shown in the cohort's admin, where "resend failed" re-sends
  it on purpose. A SENDING row without `provider_call_at` never reached the provider and goes
  back to PENDING. So a killed worker costs at most the one row it was sending.
- **Out of time**: Celery's soft time limit (SoftTimeLimitExceeded) is never swallowed. The
  chunk applies the same rule at once to the rows it still holds (the one in flight FAILED
  with AMBIGUOUS_REASON if its provider call may have started, every other back to PENDING,
  unqueued) and stops, re-raising it.
- **Templates**: a render breaks no worker (scheduler/sandbox.py bounds its size, steps and
  time): one that breaks a limit fails that learner's row with the limit it broke, and the
  chunk goes on to the next learner.
- **Failures**: a transient provider error (429, 5xx, timeouts, connection errors) puts the
  row back to PENDING with an exponential, jittered delay, up to MAX_ATTEMPTS, then FAILED; a
  refused address fails the row and suppresses the address for good.
- **Catch-up**: rows that became due while nothing ran are sent, oldest first, unless due more
  than CATCH_UP_LIMIT ago: those are SKIPPED with that reason, unless an organizer sends the
  week on purpose.
"""

import datetime
import logging
import random
import smtplib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from cohorts.models import Cohort
from cohorts.selectors import course_week
from scheduler.due import cohort_week_due, week_begins
from scheduler.models import Delivery, EmailKind
from scheduler.selectors import email_contexts, email_template_for, week_context
from scheduler.services import delivery_header, email_render
from signups.models import Enrollment
from signups.selectors import enrollments_current_of, enrollments_mailable
from signups.services import learner_address_refused

logger = logging.getLogger(__name__)

AMBIGUOUS_REASON = (
    "interrupted during the provider call: the email may or may not have been delivered, "
    "so it is not re-sent automatically; use 'resend failed' to send it again"
)
NO_TEMPLATE_REASON = "no email template for this week (add one in admin, then send the week now)"
OUT_OF_TIME_REASON = "the worker ran out of time (soft time limit) before sending this one; sent again"
TOO_LATE_REASON = "due more than {limit} ago while nothing was sending: skipped rather than sent late"
QUEUE_AGAIN_AFTER = datetime.timedelta(minutes=15)
PLAN_BATCH = 5000  # ledger rows planned, inserted or marked queued per statement


def _setting(name: str):
    return getattr(settings, name)


# --- What is due ---------------------------------------------------------------------------------


@dataclass
class DispatchReport:
    planned: Counter = field(default_factory=Counter)  # (cohort slug, kind, week, status) -> rows
    ready: Counter = field(default_factory=Counter)  # (cohort slug, kind, week) -> pending rows ready to send
    chunks: list[list[int]] = field(default_factory=list)
    returned_to_pending: int = 0
    ambiguous: int = 0
    overdue: int = 0


def _learners_with_row(cohort: Cohort, kind: str, week_number: int) -> set[int]:
    """Learners who have this email's row already: one scan of the ledger's (cohort, kind, week) index.

    Dispatch takes the difference in Python rather than with NOT EXISTS: on a ledger that
    just grew by a whole cohort, before PostgreSQL has fresh statistics, the planner may
    compare every enrollment with every row (seen: minutes for 100,000 learners).
    """
    rows = Delivery.objects.filter(cohort=cohort, kind=kind, week_number=week_number)
    return set(rows.values_list("learner_id", flat=True).iterator(chunk_size=PLAN_BATCH))


def _emails_in_window(cohort: Cohort, now: datetime.datetime) -> list[tuple[str, int]]:
    """The (kind, week) emails of a cohort that may fall due around now, for some time zone."""
    today = now.date()
    oldest = today - _setting("DELIVERY_CATCH_UP_LIMIT") - datetime.timedelta(days=8)
    emails = []
    for number in range(1, cohort.course.week_count + 2):  # the week after the last: the course's end
        begins = week_begins(cohort.start_date, number)
        if begins - datetime.timedelta(days=1) <= today and begins + datetime.timedelta(days=7) >= oldest:
            emails.append((EmailKind.WEEK, number) if number <= cohort.course.week_count else (EmailKind.COURSE_END, 0))
    return emails


class PlannedRow(NamedTuple):
    learner_id: int
    kind: str
    week_number: int
    status: str
    due_at: datetime.datetime
    reason: str


def _ledger_insert(cohort: Cohort, rows: list[PlannedRow], now: datetime.datetime) -> None:
    """Insert rows planned at `now`; a row that exists already is left alone (the unique constraint).

    On PostgreSQL one INSERT ... SELECT FROM unnest(...) per batch: building a model instance
    per row for bulk_create cost most of a 100,000-learner dispatch.
    """
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_create(
            [Delivery(cohort=cohort, created_at=now, **row._asdict()) for row in rows], batch_size=1000, ignore_conflicts=True
        )
        return
    columns = list(zip(*rows))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} (learner_id, cohort_id, kind, week_number, status, due_at, reason,"
            " attempts, provider_message_id, created_at, updated_at)"
            " SELECT planned.learner_id, %s, planned.kind, planned.week_number, planned.status, planned.due_at,"
            " planned.reason, 0, '', %s, %s"
            " FROM unnest(%s::bigint[], %s::text[], %s::integer[], %s::text[], %s::timestamptz[], %s::text[])"
            " AS planned(learner_id, kind, week_number, status, due_at, reason)"
            " ON CONFLICT DO NOTHING",
            [cohort.pk, now, now, *[list(column) for column in columns]],
        )


def _planned_rows(cohort: Cohort, now: datetime.datetime) -> Iterator[PlannedRow]:
    """The ledger rows a cohort is missing as of `now`: due and not yet in the ledger.

    A generator over streamed queries: a cohort of any size is planned in bounded memory.
    """
    limit = _setting("DELIVERY_CATCH_UP_LIMIT")
    recent = now - limit - datetime.timedelta(days=1)

    def row(learner_id, kind, week_number, due_at, template_exists):
        status, reason = Delivery.Status.PENDING, ""
        if not template_exists:
            status, reason = Delivery.Status.SKIPPED, NO_TEMPLATE_REASON
        elif due_at < now - limit:
            status, reason = Delivery.Status.SKIPPED, TOO_LATE_REASON.format(limit=limit)
        return PlannedRow(learner_id, kind, week_number, status, due_at, reason)

    for kind, week_number in _emails_in_window(cohort, now):
        has_template = email_template_for(cohort, kind, week_number) is not None
        moment_week = week_number or cohort.course.week_count + 1
        done = _learners_with_row(cohort, kind, week_number)
        learners = enrollments_mailable(cohort).values_list("learner_id", "learner__timezone")
        for learner_id, timezone_name in learners.iterator(chunk_size=PLAN_BATCH):
            if learner_id in done:
                continue
            due_at = cohort_week_due(cohort, moment_week, timezone_name)
            if due_at <= now:
                yield row(learner_id, kind, week_number, due_at, has_template)
    # Welcome on confirmation, and the group introduction once the learner has a group.
    for kind, since in [(EmailKind.WELCOME, "learner__confirmed_at"), (EmailKind.GROUP_INTRO, "grouped_at")]:
        has_template = email_template_for(cohort, kind, 0) is not None
        done = _learners_with_row(cohort, kind, 0)
        learners = enrollments_mailable(cohort).filter(**{f"{since}__gte": recent}).values_list("learner_id", since)
        for learner_id, due_at in learners.iterator(chunk_size=PLAN_BATCH):
            if learner_id not in done and due_at <= now:
                yield row(learner_id, kind, 0, due_at, has_template)


def cohorts_sending(now: datetime.datetime):
    """Cohorts whose emails may be due: not long finished, not paused. Cohorts yet to start
    count too: their welcome and group introductions go out before week 1."""
    today = now.date()
    return Cohort.objects.filter(sending_paused=False, start_date__gte=today - datetime.timedelta(weeks=60)).select_related("course")


def deliveries_reclaim(now: datetime.datetime) -> tuple[int, int]:
    """Recover rows left SENDING by a worker that stopped (see the module's docstring).

    Returns (returned to PENDING, marked FAILED as ambiguous).
    """
    stale = Delivery.objects.filter(status=Delivery.Status.SENDING, claimed_at__lt=now - _setting("DELIVERY_SENDING_TIMEOUT"))
    returned = stale.filter(provider_call_at__isnull=True).update(
        status=Delivery.Status.PENDING, claim=None, claimed_at=None, queued_at=None,
        reason="a worker stopped before calling the provider; sent again",
    )
    ambiguous = stale.filter(provider_call_at__isnull=False).update(status=Delivery.Status.FAILED, claim=None, reason=AMBIGUOUS_REASON)
    if ambiguous:
        logger.warning("%d deliveries were interrupted during the provider call and need an organizer's look", ambiguous)
    return returned, ambiguous


def _ready(now: datetime.datetime):
    return Delivery.objects.filter(status=Delivery.Status.PENDING, cohort__sending_paused=False).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )


def deliveries_overdue(now: datetime.datetime) -> int:
    """Emails due more than an hour ago and still not sent, not counting rows put in the ledger
    in the last hour (a catch-up under way): a stuck worker, or no dispatch at all, shows here."""
    hour_ago = now - datetime.timedelta(hours=1)
    return Delivery.objects.filter(
        status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING], due_at__lt=hour_ago, created_at__lt=hour_ago
    ).count()


def deliveries_dispatch(now: datetime.datetime, dry_run: bool = False) -> DispatchReport:
    """One dispatch pass: reclaim, insert what fell due, and pick the ready rows in chunks.

    Idempotent and safe to run concurrently (the ledger's unique constraint). With dry_run,
    reports what it would do and changes nothing. The caller queues (or sends) the chunks.
    """
    report = DispatchReport()
    if not dry_run:
        report.returned_to_pending, report.ambiguous = deliveries_reclaim(now)
    for cohort in cohorts_sending(now):
        batch: list[PlannedRow] = []
        for planned in _planned_rows(cohort, now):
            report.planned[(cohort.slug, planned.kind, planned.week_number, planned.status)] += 1
            if not dry_run:
                batch.append(planned)
                if len(batch) >= PLAN_BATCH:
                    _ledger_insert(cohort, batch, now)
                    batch = []
        if batch:
            _ledger_insert(cohort, batch, now)
    ready = _ready(now).filter(Q(queued_at__isnull=True) | Q(queued_at__lt=now - QUEUE_AGAIN_AFTER))
    for group in ready.order_by().values("cohort__slug", "kind", "week_number").annotate(count=Count("pk")):
        report.ready[(group["cohort__slug"], group["kind"], group["week_number"])] += group["count"]
    if dry_run:
        for (slug, kind, week_number, status), count in report.planned.items():
            if status == Delivery.Status.PENDING:
                report.ready[(slug, kind, week_number)] += count
        return report
    ids = list(ready.order_by("due_at", "pk").values_list("pk", flat=True))
    size = _setting("DELIVERY_CHUNK_SIZE")
    report.chunks = [ids[start : start + size] for start in range(0, len(ids), size)]
    for start in range(0, len(ids), PLAN_BATCH):
        Delivery.objects.filter(pk__in=ids[start : start + PLAN_BATCH]).update(queued_at=now)
    report.overdue = deliveries_overdue(now)
    if report.overdue:
        logger.warning("Overdue: %d emails were due more than an hour ago and are not sent", report.overdue)
    return report


# --- Sending a chunk -----------------------------------------------------------------------------


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retrying: int = 0


def _classify(error: Exception) -> tuple[str, bool]:
    """("transient" | "refused" | "failed", whether to suppress the address) for a send error."""
    from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused

    if isinstance(error, (AnymailRecipientsRefused, smtplib.SMTPRecipientsRefused)):
        return "refused", True
    if isinstance(error, AnymailAPIError):
        status = error.status_code
        if status is None or status in (401, 403, 404, 408, 429) or status >= 500:
            return "transient", False  # the provider, or our account with it, not the address
        return "refused", True
    if isinstance(error, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, ConnectionError, TimeoutError, OSError)):
        return "transient", False
    try:
        import requests

        if isinstance(error, (requests.ConnectionError, requests.Timeout)):
            return "transient", False
    except ImportError:  # pragma: no cover - requests comes with Anymail
        pass
    return "failed", False


def _describe(error: Exception) -> str:
    try:
        text = str(error)
    except Exception:  # some provider errors cannot describe themselves without a response
        text = repr(error)
    return text[:2000]


def _retry_delay(attempts: int) -> datetime.timedelta:
    """Exponential backoff with full jitter: up to 1, 2, 4 ... minutes, capped at TASK_RETRY_MAX_DELAY."""
    ceiling = min(60 * 2 ** (attempts - 1), _setting("TASK_RETRY_MAX_DELAY"))
    return datetime.timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def provider_rate_wait() -> None:
    """Wait for a slot under EMAIL_SEND_RATE_PER_SECOND, counted in the cache for all workers.

    With Redis as the cache every worker on every machine shares the count; 0 means no limit.
    """
    limit = _setting("EMAIL_SEND_RATE_PER_SECOND")
    if not limit:
        return
    while True:
        second = int(time.time())
        key = f"scheduler:send-rate:{second}"
        cache.add(key, 0, timeout=5)
        try:
            count = cache.incr(key)
        except ValueError:
            continue
        if count <= limit:
            return
        time.sleep(max(0.0, second + 1 - time.time()))


def _message(row: Delivery, rendered) -> EmailMultiAlternatives:
    from scheduler.tracking import delivery_metadata, delivery_tag

    message = EmailMultiAlternatives(
        subject=rendered.subject, body=rendered.text, to=[row.learner.email], headers=rendered.headers,
    )
    message.attach_alternative(rendered.html, "text/html")
    # Anymail sends these to the provider; its tracking webhooks bring them back. One tag:
    # Postmark, Mailjet and SparkPost refuse a second (see scheduler/tracking.py).
    message.metadata = delivery_metadata(row)
    message.tags = [delivery_tag(row.cohort.course.slug, row.kind, row.week_number)]
    return message


def _eligibility_problem(row: Delivery, enrollment: Enrollment | None) -> str | None:
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


def deliveries_send(ids: list[int], now: datetime.datetime | None = None) -> SendReport:
    """Send one chunk of ledger rows. Safe to run twice or concurrently: only rows this call
    claims are sent. Loads the chunk in a fixed number of queries; writes each row's result
    as it happens (before and after the provider call), so a crash costs at most one row.

    Raises SoftTimeLimitExceeded, after releasing the rows it still holds (deliveries_release).
    """
    now = now or timezone.now()
    report = SendReport()
    claim = uuid.uuid4()
    if not _ready(now).filter(pk__in=ids).update(
        status=Delivery.Status.SENDING, claim=claim, claimed_at=now, attempts=F("attempts") + 1, provider_call_at=None
    ):
        return report
    try:
        _chunk_send(claim, report, now)
    except SoftTimeLimitExceeded:
        returned, ambiguous = deliveries_release(claim)
        logger.warning("Out of time: stopped a chunk; %d rows back to pending, %d interrupted during the provider call",
                       returned, ambiguous)
        raise
    return report


def deliveries_release(claim: uuid.UUID) -> tuple[int, int]:
    """The ambiguity rule (see the module's docstring), at once, for the rows a chunk still holds
    under `claim`: those whose provider call may have started become FAILED with
    AMBIGUOUS_REASON, the others go back to PENDING, unqueued. Returns (pending, ambiguous)."""
    held = Delivery.objects.filter(claim=claim, status=Delivery.Status.SENDING)
    ambiguous = held.filter(provider_call_at__isnull=False).update(status=Delivery.Status.FAILED, claim=None, reason=AMBIGUOUS_REASON)
    returned = held.filter(provider_call_at__isnull=True).update(
        status=Delivery.Status.PENDING, claim=None, claimed_at=None, queued_at=None, reason=OUT_OF_TIME_REASON,
    )
    return returned, ambiguous


def _chunk_send(claim: uuid.UUID, report: SendReport, now: datetime.datetime) -> None:
    """The work of deliveries_send on the rows it claimed, oldest due first; results go in `report`."""
    rows = list(Delivery.objects.filter(claim=claim, status=Delivery.Status.SENDING).select_related("cohort__course", "learner"))
    enrollments = enrollments_current_of({row.learner_id for row in rows}, {row.cohort_id for row in rows})
    by_email: dict[tuple, list[tuple[Delivery, Enrollment]]] = defaultdict(list)
    for row in rows:
        enrollment = enrollments.get((row.learner_id, row.cohort_id))
        problem = _eligibility_problem(row, enrollment)
        if problem:
            _finish(row, Delivery.Status.SKIPPED, problem)
            report.skipped += 1
        else:
            by_email[(row.cohort, row.kind, row.week_number)].append((row, enrollment))
    mail_connection = get_connection()  # one connection to the provider for the whole chunk
    try:
        mail_connection.open()
        for (cohort, kind, week_number), batch in by_email.items():
            _send_batch(mail_connection, cohort, kind, week_number, batch, report, now)
    finally:
        mail_connection.close()


def _send_batch(connection, cohort, kind, week_number, batch, report: SendReport, now: datetime.datetime) -> None:
    template = email_template_for(cohort, kind, week_number)
    if template is None:
        for row, _ in batch:
            _finish(row, Delivery.Status.SKIPPED, NO_TEMPLATE_REASON)
        report.skipped += len(batch)
        return
    number = week_number if kind == EmailKind.WEEK else (cohort.course.week_count if kind == EmailKind.COURSE_END else 1)
    week = course_week(cohort.course, number)
    contexts = email_contexts(cohort, week_context(week, cohort.course.week_count) if week else None, [e for _, e in batch])
    for row, enrollment in batch:
        try:
            rendered = email_render(template.current_version, contexts[enrollment.pk], delivery_header(kind, cohort.slug, week_number, row.pk))
            message = _message(row, rendered)
        except SoftTimeLimitExceeded:
            raise  # the chunk's time is up, not this learner's fault: deliveries_send releases the rows
        except Exception as error:  # one learner's bad render (a template limit, say) must not stop the chunk
            logger.exception("Could not render delivery %s", row.pk)
            _finish(row, Delivery.Status.FAILED, f"the template failed for this learner: {error}")
            report.failed += 1
            continue
        _provider_call(connection, row, message, report, now)


def _provider_call(connection, row: Delivery, message, report: SendReport, now: datetime.datetime) -> None:
    """Call the provider for one row, recording the attempt before and the outcome after.

    Times are the pass's `now` (the present, or the moment `send_due --now` acts as).
    """
    provider_rate_wait()
    # Only while the row is still ours: if a reclaim took it back (this worker was presumed
    # dead) another may be sending it now, and this call must not happen.
    if not Delivery.objects.filter(pk=row.pk, claim=row.claim, status=Delivery.Status.SENDING).update(provider_call_at=now):
        logger.warning("Delivery %s was reclaimed while this worker held it; not sending", row.pk)
        return
    try:
        connection.send_messages([message])
    except SoftTimeLimitExceeded:
        raise  # the email may have left: deliveries_send marks this row ambiguous
    except Exception as error:
        outcome, suppress = _classify(error)
        if outcome == "transient" and row.attempts < _setting("DELIVERY_MAX_ATTEMPTS"):
            Delivery.objects.filter(pk=row.pk).update(
                status=Delivery.Status.PENDING, claim=None, queued_at=None, provider_call_at=None,
                next_attempt_at=now + _retry_delay(row.attempts), reason=f"attempt {row.attempts}: {_describe(error)}",
            )
            report.retrying += 1
            return
        prefix = "gave up after {} attempts: ".format(row.attempts) if outcome == "transient" else ""
        _finish(row, Delivery.Status.FAILED, f"{prefix}{_describe(error)}")
        report.failed += 1
        if suppress:
            learner_address_refused(row.learner_id, now)
        return
    status = getattr(message, "anymail_status", None)
    message_id = str(status.message_id) if status is not None and status.message_id is not None else ""
    Delivery.objects.filter(pk=row.pk).update(
        status=Delivery.Status.SENT, sent_at=now, provider_message_id=message_id[:255], claim=None, reason=""
    )
    report.sent += 1


def _finish(row: Delivery, status: str, reason: str) -> None:
    Delivery.objects.filter(pk=row.pk).update(status=status, reason=reason, claim=None)


# --- Organizers ----------------------------------------------------------------------------------


def deliveries_resend_failed(cohort: Cohort, kind: str, week_number: int) -> int:
    """Send a cohort's email again to those it failed for (an organizer's decision). Returns how many."""
    return Delivery.objects.filter(
        cohort=cohort, kind=kind, week_number=week_number, status=Delivery.Status.FAILED
    ).update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=None, queued_at=None, provider_call_at=None,
             claim=None, reason="re-sent by an organizer")


def deliveries_send_week_now(cohort: Cohort, week_number: int, now: datetime.datetime) -> int:
    """An organizer sends a week on purpose, now: to everyone mailable who has not had it,
    including rows skipped as too late or for lack of a template. Returns how many are queued."""
    with transaction.atomic():
        revived = Delivery.objects.filter(
            cohort=cohort, kind=EmailKind.WEEK, week_number=week_number, status=Delivery.Status.SKIPPED
        ).filter(Q(reason__startswith="due more than") | Q(reason=NO_TEMPLATE_REASON)).update(
            status=Delivery.Status.PENDING, due_at=now, next_attempt_at=None, queued_at=None, reason="sent now by an organizer"
        )
        done = _learners_with_row(cohort, EmailKind.WEEK, week_number)
        missing = [learner_id for learner_id in enrollments_mailable(cohort).values_list("learner_id", flat=True) if learner_id not in done]
        rows = [Delivery(learner_id=learner_id, cohort=cohort, kind=EmailKind.WEEK, week_number=week_number, due_at=now,
                         created_at=now, reason="sent now by an organizer") for learner_id in missing]
        Delivery.objects.bulk_create(rows, batch_size=5000, ignore_conflicts=True)
    return revived + len(rows)
