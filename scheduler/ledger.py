"""The delivery ledger's state machine: every change of a row's status, each one guarded UPDATE.

    PENDING --claim--> SENDING --calling--> provider --> SENT
       ^                  |                        |--> PENDING (retry with backoff; or a fault on
       |                  |                        |    our side: the cohort paused itself)
       |                  |                        |--> FAILED (refused address, gave up, ambiguous)
       |                  |--> SKIPPED (not mailable) / FAILED (template failed for this learner)
       |                  '--> PENDING (released: never reached the provider)
       '-- reclaim: SENDING past DELIVERY_SENDING_TIMEOUT goes back to PENDING if it never reached
           the provider, else FAILED as ambiguous (it may have arrived: never re-sent by itself)

A change from SENDING happens only `WHERE claim = <the holder's claim> AND status = 'sending'`:
a worker presumed dead (its rows reclaimed) cannot change a row another has since taken. Each
function returns whether it changed the row (or how many), and writes `reason_code` (what other
code relies on) and `reason` (details for people).
"""

import datetime
import uuid

from django.conf import settings
from django.db import connection
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce

from scheduler.models import Delivery, TrackingEvent

Reason = Delivery.Reason
Status = Delivery.Status


def _held(claim: uuid.UUID):
    return Delivery.objects.filter(claim=claim, status=Status.SENDING)


def _row_held(pk: int, claim: uuid.UUID):
    return _held(claim).filter(pk=pk)


def rows_ready(now: datetime.datetime):
    """PENDING rows whose backoff is over, in cohorts that are sending."""
    return Delivery.objects.filter(status=Status.PENDING, cohort__sending_paused=False).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )


def catch_up_cutoff(now: datetime.datetime) -> datetime.datetime:
    return now - settings.DELIVERY_CATCH_UP_LIMIT


def rows_skip_too_late(ids, now: datetime.datetime) -> int:
    """Ready rows among `ids` that fell due before the catch-up window: SKIPPED, those still waiting
    for their template with that reason. Checked when rows are claimed, not only when planned,
    so a week never arrives days late after an outage."""
    late = rows_ready(now).filter(pk__in=ids, due_at__lt=catch_up_cutoff(now))
    no_template = late.filter(reason_code=Reason.WAITING_FOR_TEMPLATE).update(
        status=Status.SKIPPED, reason_code=Reason.NO_TEMPLATE, reason=too_late_detail(Reason.NO_TEMPLATE),
    )
    too_late = late.update(status=Status.SKIPPED, reason_code=Reason.TOO_LATE, reason=too_late_detail(Reason.TOO_LATE))
    return no_template + too_late


def too_late_detail(code: str) -> str:
    """The reason a row skipped for the catch-up window gives (TOO_LATE or NO_TEMPLATE)."""
    limit = settings.DELIVERY_CATCH_UP_LIMIT
    if code == Reason.NO_TEMPLATE:
        return f"no email template within {limit} of the due moment (add one, then send the week now)"
    return f"due more than {limit} ago while nothing was sending: skipped rather than sent late"


def rows_claim(ids, now: datetime.datetime) -> uuid.UUID | None:
    """Take the ready rows among `ids` for one send pass: PENDING -> SENDING under a new claim, in one
    UPDATE, so of two workers given the same rows each row goes to exactly one. None: none left."""
    claim = uuid.uuid4()
    taken = rows_ready(now).filter(pk__in=ids).update(
        status=Status.SENDING, claim=claim, claimed_at=now, attempts=F("attempts") + 1, provider_call_at=None
    )
    return claim if taken else None


def row_calling(pk: int, claim: uuid.UUID, at: datetime.datetime) -> bool:
    """Just before the provider call: from now on a crash leaves the row ambiguous. Also renews
    the claim's lease (claimed_at), so the reclaim timeout measures progress, not the chunk's age."""
    return bool(_row_held(pk, claim).update(provider_call_at=at, claimed_at=at))


def row_sent(pk: int, claim: uuid.UUID, at: datetime.datetime, message_id: str) -> bool:
    return bool(_row_held(pk, claim).update(
        status=Status.SENT, sent_at=at, provider_message_id=message_id[:255], claim=None, reason_code=Reason.NONE, reason=""
    ))


# row_sent for one row and row_calling for the next, in one statement: the sending loop's hot
# path, one round trip and one commit per email. Written in SQL because the ORM can only say it
# with Case/When expressions, which take longer to build than the provider call they guard.
_SENT_THEN_CALLING = """
    UPDATE {table} SET
        status = CASE WHEN id = %(sent)s THEN %(sent_status)s ELSE status END,
        sent_at = CASE WHEN id = %(sent)s THEN %(sent_at)s ELSE sent_at END,
        provider_message_id = CASE WHEN id = %(sent)s THEN %(message_id)s ELSE provider_message_id END,
        claim = CASE WHEN id = %(sent)s THEN NULL ELSE claim END,
        reason_code = CASE WHEN id = %(sent)s THEN %(no_reason)s ELSE reason_code END,
        reason = CASE WHEN id = %(sent)s THEN '' ELSE reason END,
        provider_call_at = CASE WHEN id = %(calling)s THEN %(calling_at)s ELSE provider_call_at END,
        claimed_at = CASE WHEN id = %(calling)s THEN %(calling_at)s ELSE claimed_at END
    WHERE claim = %(claim)s AND status = %(sending)s AND id IN (%(sent)s, %(calling)s)
    RETURNING id
"""


def row_sent_then_calling(
    sent_pk: int, sent_at: datetime.datetime, message_id: str, calling_pk: int, calling_at: datetime.datetime, claim: uuid.UUID
) -> tuple[bool, bool]:
    """row_sent(sent_pk) and row_calling(calling_pk) as one guarded UPDATE, so both or neither
    are written: returns (whether sent_pk became SENT, whether calling_pk is now in its call).

    Outside a transaction the statement commits on its own. A worker killed before that commit
    leaves sent_pk as in its call (the reclaim marks it ambiguous) and calling_pk not yet
    called (sent again); killed after it, only calling_pk may have left.
    """
    field = Delivery._meta.get_field
    params = {
        "sent": sent_pk, "sent_status": Status.SENT, "sent_at": field("sent_at").get_db_prep_value(sent_at, connection),
        "message_id": message_id[:255], "no_reason": Reason.NONE,
        "calling": calling_pk, "calling_at": field("provider_call_at").get_db_prep_value(calling_at, connection),
        "claim": field("claim").get_db_prep_value(claim, connection), "sending": Status.SENDING,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SENT_THEN_CALLING.format(table=connection.ops.quote_name(Delivery._meta.db_table)), params)
        written = {pk for (pk,) in cursor.fetchall()}
    return sent_pk in written, calling_pk in written


def row_retry(pk: int, claim: uuid.UUID, next_attempt_at: datetime.datetime, detail: str) -> bool:
    return bool(_row_held(pk, claim).update(
        status=Status.PENDING, claim=None, queued_at=None, provider_call_at=None, next_attempt_at=next_attempt_at,
        reason_code=Reason.RETRYING, reason=detail,
    ))


def row_end(pk: int, claim: uuid.UUID, status: str, code: str, detail: str) -> bool:
    """FAILED or SKIPPED for good (until an organizer sends it again)."""
    return bool(_row_held(pk, claim).update(status=status, claim=None, reason_code=code, reason=detail))


def rows_release(claim: uuid.UUID, code: str, detail: str, *, pks=None, next_attempt_at=None) -> int:
    """Give back rows held under `claim` that never reached the provider: PENDING again, unqueued,
    and the claim did not count as an attempt."""
    held = _held(claim).filter(provider_call_at__isnull=True)
    if pks is not None:
        held = held.filter(pk__in=pks)
    return held.update(
        status=Status.PENDING, claim=None, claimed_at=None, queued_at=None, attempts=F("attempts") - 1,
        next_attempt_at=next_attempt_at, reason_code=code, reason=detail,
    )


def row_not_sent(pk: int, claim: uuid.UUID, code: str, detail: str) -> bool:
    """The provider refused the call itself, for a reason on our side: nothing left, so the row
    is given back, PENDING, as not tried."""
    return bool(_row_held(pk, claim).update(
        status=Status.PENDING, claim=None, claimed_at=None, queued_at=None, provider_call_at=None,
        attempts=F("attempts") - 1, reason_code=code, reason=detail,
    ))


AMBIGUOUS_DETAIL = (
    "interrupted during the provider call: the email may or may not have been delivered, "
    "so it is not re-sent automatically; use 'resend failed' to send it again"
)


def rows_ambiguous(claim: uuid.UUID, detail: str = AMBIGUOUS_DETAIL, *, pks=None) -> int:
    """Rows held under `claim` whose provider call may have happened: FAILED as ambiguous."""
    held = _held(claim).filter(provider_call_at__isnull=False)
    if pks is not None:
        held = held.filter(pk__in=pks)
    return held.update(status=Status.FAILED, claim=None, reason_code=Reason.AMBIGUOUS, reason=detail)


def rows_reclaim(now: datetime.datetime) -> tuple[int, int]:
    """Rows left SENDING by a worker that stopped (no lease renewal for DELIVERY_SENDING_TIMEOUT).
    Returns (back to PENDING, FAILED as ambiguous)."""
    stale = Delivery.objects.filter(status=Status.SENDING, claimed_at__lt=now - settings.DELIVERY_SENDING_TIMEOUT)
    returned = stale.filter(provider_call_at__isnull=True).update(
        status=Status.PENDING, claim=None, claimed_at=None, queued_at=None, reason_code=Reason.WORKER_STOPPED,
        reason="a worker stopped before calling the provider; sent again",
    )
    ambiguous = stale.filter(provider_call_at__isnull=False).update(
        status=Status.FAILED, claim=None, reason_code=Reason.AMBIGUOUS, reason=AMBIGUOUS_DETAIL
    )
    return returned, ambiguous


def rows_send_again(rows, now: datetime.datetime, detail: str) -> int:
    """An organizer sends these rows (FAILED or SKIPPED) again, now: PENDING, due now (so the
    catch-up window counts from this decision), attempts from zero."""
    return rows.exclude(status__in=[Status.SENDING, Status.SENT]).update(
        status=Status.PENDING, due_at=now, attempts=0, next_attempt_at=None, queued_at=None, provider_call_at=None,
        claim=None, reason_code=Reason.ORGANIZER, reason=detail,
    )


def rows_resolved_by_provider(accepted_types, refused_types, now: datetime.datetime) -> int:
    """Ambiguous rows the provider's tracking events resolve: one it reports having taken (any of
    `accepted_types`: queued, delivered, bounced ...) is SENT, at the moment of its call; one it
    reports having refused stays FAILED, as refused. Returns how many were found SENT. Whichever
    comes first, the event or the row's ambiguity, this finds them (scheduler/events.py runs it
    at every batch)."""
    ambiguous = Delivery.objects.filter(status=Status.FAILED, reason_code=Reason.AMBIGUOUS)
    events = TrackingEvent.objects.filter(delivery_id=OuterRef("pk"))
    sent = ambiguous.filter(Exists(events.filter(event_type__in=accepted_types))).update(
        status=Status.SENT, sent_at=Coalesce(F("provider_call_at"), F("claimed_at")), reason_code=Reason.PROVIDER_CONFIRMED,
        reason=f"interrupted during the provider call; the provider's tracking events show it took the email (found {now:%Y-%m-%d %H:%M} UTC)",
    )
    ambiguous.filter(Exists(events.filter(event_type__in=refused_types))).update(
        reason_code=Reason.REFUSED, reason="interrupted during the provider call; the provider's tracking events show it refused the address",
    )
    return sent
