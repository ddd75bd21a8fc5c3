"""Learners' own emails (confirmation, manage link, "already enrolled"...) through an outbox.

A web request never talks to the mail provider: it writes a LearnerEmail row, inside its
transaction if it has one, and queues a task for it once that commits (TRANSACTIONAL_QUEUE).
A worker then claims the row, renders the email and sends it (signups/email_rows.py has each
change of status). So the request answers at once whatever the provider does, and the email is
never lost:

- A provider that fails or hangs (Anymail's 30 s timeout; the task's time limit): PENDING again,
  tried after 30 s, 2 min, 8 min, 32 min, then every hour, LEARNER_EMAIL_MAX_ATTEMPTS in all,
  then FAILED. A hang can mean the provider took it after all: a second copy of a link is the
  price, better than none.
- A refused address (AnymailRecipientsRefused): FAILED at once, never tried again.
- A learner who unsubscribed after it was queued, or a row it refers to that is gone by then:
  FAILED with that reason, not sent (nobody is mailed against their will).
- An email that fails for good gives the learner's resend slot back (confirmation_sent_at), so
  signing up again (or an organizer's re-send) mails a new link at once.
- A broker that is unreachable when the task is queued: logged, and the request answers all the
  same. The sweeper (beat, every minute) queues again every row whose message is overdue by
  REQUEUE_AFTER, or whose worker died mid-send (CLAIM_TIMEOUT): a lost message only delays.
- Organizers see every row in the admin (Learner emails, and on each learner's page) and send
  a failed one again (learner_emails_send_again).
"""

import datetime
import json
import logging
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from kombu.exceptions import OperationalError

from signups import email_rows
from signups.models import Learner, LearnerEmail, Suppression

logger = logging.getLogger(__name__)

# A newer email of one of these replaces an older one still waiting to go: a person who signs up
# twice while the provider is down gets one confirmation (the newest link), not a pile. Others
# each say something of their own ("you joined the round") and are all sent.
REPLACES_PENDING = frozenset({"confirmation", "manage_link", "address_confirm"})

# Publishing a task from a web request: one more try after a failure, not kombu's three (see
# learner_email_enqueue; the email editor's test send uses it too).
ENQUEUE_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

# The backoff after a failed attempt n: 30 s * 4^(n-1), capped (see retry_delay).
FIRST_RETRY_DELAY = datetime.timedelta(seconds=30)
LONGEST_RETRY_DELAY = datetime.timedelta(hours=1)


# --- The context: plain values, and rows by reference ------------------------------------------


def context_store(context: dict) -> dict:
    """The context as JSON: a model instance becomes {"model": "app.model", "pk": ...} (loaded again
    when the email is sent); anything else must be JSON already. Raises TypeError otherwise: a date
    or a set is the caller's to turn into a string or a list."""
    stored = {}
    for name, value in context.items():
        if isinstance(value, models.Model):
            if value.pk is None:
                raise TypeError(f"The email's {name!r} is an unsaved {type(value).__name__}: save it first.")
            stored[name] = {"model": value._meta.label_lower, "pk": value.pk}
            continue
        if _looks_like_reference(value):
            raise TypeError(f"The email's {name!r} would be read back as a reference to a row: rename its keys.")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"The email's {name!r} is not JSON ({error}): pass a model instance or plain values.") from None
        stored[name] = value
    return stored


def _looks_like_reference(value) -> bool:
    return isinstance(value, dict) and set(value) == {"model", "pk"}


class ReferenceGone(Exception):
    """A row the email is about was deleted before it was sent."""


def context_load(stored: dict) -> dict:
    """The stored context with each reference replaced by its row, as it is now. Raises ReferenceGone."""
    context = {}
    for name, value in stored.items():
        if _looks_like_reference(value):
            model = apps.get_model(value["model"])
            row = model._default_manager.filter(pk=value["pk"]).first()
            if row is None:
                raise ReferenceGone(f"the {model._meta.verbose_name} it was about (id {value['pk']}) no longer exists")
            value = row
        context[name] = value
    return context


# --- Queueing ---------------------------------------------------------------------------------


def learner_email_queue(
    learner: Learner, template: str, context: dict, headers: dict | None, now: datetime.datetime, to: str = ""
) -> LearnerEmail:
    """Write the email to the outbox, in the caller's transaction if any, and queue its task once
    that commits (at once without one). It goes to the learner's address as it is when sent, or
    to `to` (only the link confirming a new address goes elsewhere). An email of a template in
    REPLACES_PENDING takes the place of the learner's email of that template still waiting to go,
    if any. Raises TypeError
    for a context that cannot be stored (context_store); never touches the provider, nor the
    broker before the commit."""
    stored = context_store(context)
    if template in REPLACES_PENDING:
        email_rows.rows_drop_pending(learner.pk, template)
    email = LearnerEmail.objects.create(
        learner=learner, template=template, context=stored, headers=dict(headers or {}), next_attempt_at=now, queued_at=now,
        to_email=to,
    )
    transaction.on_commit(lambda: learner_email_enqueue(email.pk))
    return email


def learner_email_enqueue(email_id: int, eta: datetime.datetime | None = None) -> bool:
    """Queue the send task for a committed row (at `eta`, or now). Never raises for the broker:
    an unreachable one is logged and the row left to the sweeper; False then."""
    from signups.tasks import learner_email_send  # the tasks call this module's services

    try:
        # One more try after a failure (a pooled connection Redis dropped), not kombu's three:
        # a request waits at most two BROKER_SOCKET_TIMEOUTs for a broker that does not answer.
        learner_email_send.apply_async(args=[email_id], eta=eta, retry_policy=ENQUEUE_RETRY_POLICY)
    except (OperationalError, OSError) as error:
        logger.warning("Learner email %s not queued, the broker is unreachable (the sweeper will queue it): %s", email_id, error)
        email_rows.row_unqueued(email_id)
        return False
    return True


def learner_emails_requeue(now: datetime.datetime) -> int:
    """The sweeper (beat, every minute): queue again every row whose message is overdue by
    REQUEUE_AFTER, or whose worker died mid-send. A row queued recently is left alone.
    Idempotent: a second task for a row changes nothing (the claim). Returns how many it queued."""
    ids = email_rows.rows_due_for_requeue(now)
    for email_id in ids:
        learner_email_enqueue(email_id)
    if ids:
        logger.warning("Queued %d learner emails again: their messages were lost, or their worker stopped", len(ids))
    return len(ids)


def learner_emails_send_again(emails, now: datetime.datetime) -> int:
    """An organizer sends failed emails again: attempts from zero, queued after the commit. Rows
    that are not FAILED are left as they are. Returns how many will be sent again."""
    ids = email_rows.rows_send_again([email.pk for email in emails], now)
    for email_id in ids:
        transaction.on_commit(lambda email_id=email_id: learner_email_enqueue(email_id))
    return len(ids)


# --- Sending (the worker) ---------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    status: str  # LearnerEmail.Status, or "" when the row was not ours to send (not due, sent, gone)
    retry_at: datetime.datetime | None = None  # queue the task again for this moment


NOT_CLAIMED = SendOutcome("")


def retry_delay(attempts: int) -> datetime.timedelta:
    """How long to wait after `attempts` failed tries: 30 s, 2 min, 8 min, 32 min, then an hour
    (never longer than TASK_RETRY_MAX_DELAY, which the broker's redelivery window outlasts)."""
    longest = min(LONGEST_RETRY_DELAY, datetime.timedelta(seconds=settings.TASK_RETRY_MAX_DELAY))
    return min(FIRST_RETRY_DELAY * 4 ** (attempts - 1), longest)


def learner_email_send(email_id: int, now: datetime.datetime) -> SendOutcome:
    """Send one outbox row, if it is due and no one else holds it (one guarded UPDATE claims it).

    Safe to call any number of times for a row: only the call that claims it sends. What then
    happens is in the module's docstring; the outcome says whether to queue the task again, and
    when. Raises nothing the provider causes (the row records it); a soft time limit during the
    call counts as a failure to retry.
    """
    claim = email_rows.row_claim(email_id, now)
    if claim is None:
        return NOT_CLAIMED
    email = LearnerEmail.objects.select_related("learner").filter(pk=email_id).first()
    if email is None:  # the learner was erased just now, and their mail with them
        return NOT_CLAIMED
    learner = email.learner
    if learner.unsubscribed_at is not None and learner.unsubscribed_at >= email.created_at:
        return _fail(email, claim, "not sent: the learner unsubscribed after it was queued")
    try:
        context = context_load(email.context)
    except ReferenceGone as gone:
        return _fail(email, claim, f"not sent: {gone}")
    from anymail.exceptions import AnymailRecipientsRefused
    from signups.services import _render_and_send  # the services queue through this module

    try:
        _render_and_send(learner, email.template, context, email.headers, email.to_email)
    except AnymailRecipientsRefused as refused:
        # Like a hard bounce: nothing more to this address until its owner signs up and
        # confirms again (signups/suppressions.py).
        from signups.suppressions import learner_mail_stop

        learner_mail_stop(learner.pk, Suppression.Reason.REFUSED, now)
        return _fail(email, claim, f"the provider refused the address: {_describe(refused)}")
    except Exception as error:  # noqa: BLE001 - whatever it is, the row records it and is tried again
        logger.warning("Learner email %s (%s), attempt %d, failed: %s", email.pk, email.template, email.attempts, _describe(error))
        if email.attempts >= settings.LEARNER_EMAIL_MAX_ATTEMPTS:
            return _fail(email, claim, f"gave up after {email.attempts} attempts: {_describe(error)}")
        retry_at = now + retry_delay(email.attempts)
        if email_rows.row_retry(email.pk, claim, retry_at, _describe(error)):
            return SendOutcome(LearnerEmail.Status.PENDING, retry_at)
        return NOT_CLAIMED
    if email_rows.row_sent(email.pk, claim, now):
        return SendOutcome(LearnerEmail.Status.SENT)
    return NOT_CLAIMED


def _fail(email: LearnerEmail, claim, reason: str) -> SendOutcome:
    """FAILED for good; the learner's resend slot is given back, so that signing up again (or an
    organizer's re-send) mails a new link at once rather than in CONFIRMATION_RESEND_INTERVAL."""
    logger.warning("Learner email %s (%s) failed: %s", email.pk, email.template, reason)
    if not email_rows.row_fail(email.pk, claim, reason):
        return NOT_CLAIMED
    Learner.objects.filter(pk=email.learner_id).update(confirmation_sent_at=None)
    return SendOutcome(LearnerEmail.Status.FAILED)


def _describe(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - some provider errors cannot describe themselves
        text = repr(error)
    return f"{type(error).__name__}: {text}"
