"""Every change of a learner email's status (LearnerEmail), each one guarded UPDATE.

A change from SENDING happens only `WHERE claim = <the holder's claim> AND status = 'sending'`:
a worker presumed dead (its row claimed afresh after CLAIM_TIMEOUT) changes nothing when it
wakes. Each function returns whether it changed the row (or which rows it changed).
"""

import datetime
import uuid

from django.db.models import F, Q

from signups.models import LearnerEmail

Status = LearnerEmail.Status

# The longest a send task may run (its hard time limit, signups/tasks.py) ...
SEND_TIME_LIMIT = datetime.timedelta(seconds=90)
# ... and how long a SENDING row is left to its worker before another may claim it. Longer
# than the time limit, so a live worker's row is never taken from it.
CLAIM_TIMEOUT = datetime.timedelta(minutes=5)
# A PENDING row whose queued message should have run this long ago is queued again by the
# sweeper: the message was lost (a broker restart) or never left (the broker was unreachable).
REQUEUE_AFTER = datetime.timedelta(minutes=5)

ERROR_MAX_LENGTH = 2000


def _claimable(now: datetime.datetime) -> Q:
    return Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(status=Status.SENDING, claimed_at__lte=now - CLAIM_TIMEOUT)


def _held(pk: int, claim: uuid.UUID):
    return LearnerEmail.objects.filter(pk=pk, claim=claim, status=Status.SENDING)


def row_claim(pk: int, now: datetime.datetime) -> uuid.UUID | None:
    """Take the row for one send: PENDING and due (or SENDING past CLAIM_TIMEOUT) -> SENDING, in one
    UPDATE, so of two tasks for one row exactly one sends. None: not due, or not ours to send."""
    claim = uuid.uuid4()
    taken = LearnerEmail.objects.filter(_claimable(now), pk=pk).update(
        status=Status.SENDING, claim=claim, claimed_at=now, attempts=F("attempts") + 1
    )
    return claim if taken else None


def row_sent(pk: int, claim: uuid.UUID, at: datetime.datetime) -> bool:
    return bool(_held(pk, claim).update(status=Status.SENT, sent_at=at, claim=None))


def row_retry(pk: int, claim: uuid.UUID, at: datetime.datetime, error: str) -> bool:
    """Back to PENDING, due `at`; the task queues its message for that moment (queued_at)."""
    return bool(_held(pk, claim).update(
        status=Status.PENDING, claim=None, next_attempt_at=at, queued_at=at, last_error=error[:ERROR_MAX_LENGTH]
    ))


def row_fail(pk: int, claim: uuid.UUID, error: str) -> bool:
    return bool(_held(pk, claim).update(status=Status.FAILED, claim=None, last_error=error[:ERROR_MAX_LENGTH]))


def rows_drop_pending(learner_id: int, template: str) -> int:
    """A newer email of this template takes the place of the learner's ones still PENDING: they
    are deleted (a task queued for them finds nothing). One being sent right now is left to
    finish: at worst two copies of a link, never none."""
    deleted, _ = LearnerEmail.objects.filter(learner_id=learner_id, template=template, status=Status.PENDING).delete()
    return deleted


def row_unqueued(pk: int) -> bool:
    """No task message could be queued for this PENDING row: the sweeper takes it at its next pass."""
    return bool(LearnerEmail.objects.filter(pk=pk, status=Status.PENDING).update(queued_at=None))


def rows_due_for_requeue(now: datetime.datetime) -> list[int]:
    """Rows whose message is overdue (lost, never queued) or whose worker died, marked as queued
    now; returns their ids, for the caller to queue. A row queued again within REQUEUE_AFTER is
    left alone, so a sweeper pass each minute queues a stuck row at most once per REQUEUE_AFTER."""
    stale = now - REQUEUE_AFTER
    overdue = LearnerEmail.objects.filter(_claimable(now)).filter(Q(queued_at__isnull=True) | Q(queued_at__lte=stale))
    ids = list(overdue.order_by("next_attempt_at").values_list("pk", flat=True)[:1000])
    # Marked by the same conditions: a row claimed meanwhile is not queued again.
    marked = LearnerEmail.objects.filter(_claimable(now), pk__in=ids).filter(Q(queued_at__isnull=True) | Q(queued_at__lte=stale))
    marked.update(queued_at=now)
    return ids


def rows_send_again(pks, now: datetime.datetime) -> list[int]:
    """An organizer sends these FAILED rows again: PENDING, due now, attempts from zero. Returns
    the ids of the rows that changed (the others were not failed)."""
    failed = list(LearnerEmail.objects.filter(pk__in=list(pks), status=Status.FAILED).values_list("pk", flat=True))
    changed = LearnerEmail.objects.filter(pk__in=failed, status=Status.FAILED)
    changed.update(status=Status.PENDING, attempts=0, next_attempt_at=now, queued_at=now, claim=None)
    return failed
