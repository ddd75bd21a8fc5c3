"""The provider talks back: its tracking events, stored once, then applied by a worker.

- **Store** (the webhook's request, scheduler/webhooks.py): each Anymail tracking event becomes
  one TrackingEvent row as it came (its metadata, message id, recipient), keyed by (esp,
  event_key), in one INSERT ... ON CONFLICT DO NOTHING: a webhook sent again or a payload
  replayed changes nothing. No lookup in the request; then a worker is asked to apply what
  arrived (each web process asks at most once per TRACKING_APPLY_GATHER_MS, and at most one
  task is queued per APPLY_DEBOUNCE_SECONDS).
- **Apply** (`tracking_events_apply`, a Celery task; beat runs it every minute as well, for
  anything a lost task left): in batches, each one transaction over its locked events
  (SKIP LOCKED: two workers share the work):
  - each event finds its email through its metadata (`delivery`, believed only when its `learner`
    agrees), else the provider's message id; its learner through the metadata's `learner` (the
    outbox's emails carry it too), else the recipient's address, which is then forgotten (the
    digest stays). Neither: the event is kept as orphaned;
  - the email's row records the first delivered, opened, clicked and bounced moments (an open
    implies a delivery, a click an open), the numbers the dashboard counts;
  - a row left FAILED as *ambiguous* (a crash or timeout during the provider call) that the
    provider reports having taken is SENT; one it reports having refused is FAILED as refused;
  - what the event says about the address (scheduler/bounces.py) stops the learner's mail:
    a hard bounce, a complaint or an unsubscribe at once, soft bounces after SOFT_BOUNCE_LIMIT
    different emails in a row bounced softly with nothing delivered since (signups/suppressions.py).
    An event about an address the learner no longer has suppresses that address only.
"""

import contextlib
import datetime
import hashlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min, OuterRef, Q, Subquery

from mooc.queueing import task_queue_once, task_started
from scheduler import ledger
from scheduler.bounces import event_refusal
from scheduler.models import Delivery, TrackingEvent
from signups.models import Suppression, email_digest, email_normalize
from signups.selectors import learner_email_digests, learners_by_public_id_or_email
from signups.suppressions import address_suppress, learner_mail_stop

logger = logging.getLogger(__name__)

Type = TrackingEvent.Type
Refusal = TrackingEvent.Refusal

SOFT_BOUNCE_LIMIT = 3
APPLY_BATCH = 1000
APPLY_DEBOUNCE_SECONDS = 5
APPLY_QUEUED_KEY = "scheduler:tracking-apply-queued"
# A publish from a web request: one more try after a failure, not kombu's three (signups/emails.py).

# Events that prove the provider took the email from us (it then tried to deliver it).
ACCEPTED = (
    Type.QUEUED, Type.SENT, Type.DELIVERED, Type.DEFERRED, Type.BOUNCED, Type.OPENED, Type.CLICKED,
    Type.COMPLAINED, Type.UNSUBSCRIBED, Type.AUTORESPONDED,
)
# Which first moment of the email's row each kind of event sets.
_ROW_MOMENTS = {
    "delivered_at": (Type.DELIVERED, Type.OPENED, Type.CLICKED),
    "opened_at": (Type.OPENED, Type.CLICKED),
    "clicked_at": (Type.CLICKED,),
}
_STOP_REASONS = {
    Refusal.HARD: Suppression.Reason.BOUNCED,
    Refusal.COMPLAINT: Suppression.Reason.COMPLAINED,
    Refusal.UNSUBSCRIBE: Suppression.Reason.UNSUBSCRIBED,
}


# --- Store -------------------------------------------------------------------------------------


@dataclass
class StoreReport:
    received: int = 0
    stored: int = 0  # new; the rest were stored before (sent again, or replayed)
    stored_keys: list[str] = dataclass_field(default_factory=list)


def _event_key(event, recipient_digest: str) -> str:
    """The ESP's event id (with the recipient: Amazon SES gives one id to a notification about
    several), or, for ESPs that give none, a digest of what makes the event itself."""
    if event.event_id:
        return f"{event.event_id}|{recipient_digest[:16]}"[:255]
    facts = [
        event.event_type, event.message_id, recipient_digest, event.timestamp.isoformat() if event.timestamp else None,
        event.click_url, event.mta_response, event.description,
    ]
    return "sha256:" + hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()


def _metadata(event) -> dict:
    return event.metadata if isinstance(event.metadata, dict) else {}


def _delivery_id(value) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def _detail(event) -> str:
    parts = [str(part) for part in (event.description, event.mta_response) if part]
    return " | ".join(parts)[:500]


def tracking_events_store(esp: str, events, now: datetime.datetime) -> StoreReport:
    """Store a webhook's events once each, as they came, and ask a worker to apply them (after
    the commit). One INSERT per INSERT_BATCH events and no lookup: finding each event's email and
    learner is the worker's (`tracking_events_apply`), so an ESP posting one event per request,
    as most do, costs the request one statement. Its own transaction unless the caller holds one."""
    report = StoreReport(received=len(events))
    if not events:
        return report
    rows = {}  # one per key, also within the batch
    for event in events:
        row = _row_as_received(esp, event, now)
        rows.setdefault(row.event_key, row)
    fresh = _rows_insert_new(list(rows.values()))
    report.stored = len(fresh)
    report.stored_keys = [row.event_key for row in fresh]
    if fresh:
        transaction.on_commit(tracking_events_apply_soon)  # after our statement: with the caller's commit, if any
    return report


def _metadata_learner(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


_TYPES = frozenset(Type.values)  # Type.values builds its list at every call


def _row_as_received(esp: str, event, now: datetime.datetime) -> TrackingEvent:
    data = _metadata(event)
    recipient = email_normalize(event.recipient) if event.recipient else ""
    digest = email_digest(recipient) if recipient else ""
    return TrackingEvent(
        esp=esp, event_key=_event_key(event, digest),
        event_type=event.event_type if event.event_type in _TYPES else Type.UNKNOWN,
        refusal=event_refusal(esp, event), occurred_at=event.timestamp or now, received_at=now,
        message_id=str(event.message_id or "")[:255], recipient_digest=digest,
        recipient=recipient if len(recipient) <= 254 else "",
        metadata_delivery=_delivery_id(data.get("delivery")), metadata_learner=_metadata_learner(data.get("learner")),
        detail=_detail(event),
    )


def tracking_events_orphaned(esp: str, keys) -> int:
    """How many of these stored events, once applied, found neither an email nor a learner of ours."""
    return TrackingEvent.objects.filter(esp=esp, event_key__in=list(keys), applied_at__isnull=False, learner__isnull=True).count()


def _events_resolve(events: list[TrackingEvent]) -> None:
    """Find each event's email and learner: the metadata's delivery (believed only if the
    metadata's learner, when it names one, is that email's learner: a staging site sending
    through the same account numbers its rows too), else the provider's message id; failing
    both, the learner by the metadata's public id, else by the recipient's address. At most
    three queries for the batch, whatever its size; writes nothing (`_events_mark_applied` does)."""
    delivery_ids = {event.metadata_delivery for event in events if event.metadata_delivery}
    by_pk = {
        pk: (learner_id, public_id)
        for pk, learner_id, public_id in Delivery.objects.filter(pk__in=delivery_ids).order_by()
        .values_list("pk", "learner_id", "learner__public_id")
    } if delivery_ids else {}
    by_message = []
    for event in events:
        found = by_pk.get(event.metadata_delivery)
        if found and event.metadata_learner in (None, found[1]):
            event.delivery_id, event.learner_id = event.metadata_delivery, found[0]
        else:
            by_message.append(event)
    # Our emails carry their row's id: the message id is looked up only for the others, so a
    # batch of ours costs no second search of the ledger.
    message_ids = {event.message_id for event in by_message if event.message_id}
    by_message_id = {
        message_id: (pk, learner_id)
        for pk, learner_id, message_id in Delivery.objects.filter(provider_message_id__in=message_ids).order_by()
        .values_list("pk", "learner_id", "provider_message_id")
    } if message_ids else {}
    unresolved = []
    for event in by_message:
        if event.message_id in by_message_id:
            event.delivery_id, event.learner_id = by_message_id[event.message_id]
        else:
            unresolved.append(event)
    learners = learners_by_public_id_or_email(
        {event.metadata_learner for event in unresolved if event.metadata_learner},
        {event.recipient for event in unresolved if event.recipient},
    ) if unresolved else []
    learner_by_public_id = {public_id: pk for pk, public_id, _ in learners}
    learner_by_email = {email: pk for pk, _, email in learners}
    for event in unresolved:
        event.learner_id = learner_by_public_id.get(str(event.metadata_learner)) or learner_by_email.get(event.recipient)


def _events_mark_applied(events: list[TrackingEvent], now: datetime.datetime) -> None:
    """Write each event's email and learner, forget its address (kept only to find the learner)
    and mark it applied: one UPDATE for the batch, joined to its values, so that each event's
    row is written once (Django's bulk_update builds a CASE per column and row, which cost the
    worker more than all the rest of the batch)."""
    table = connection.ops.quote_name(TrackingEvent._meta.db_table)
    one_row = "(CAST(%s AS bigint), CAST(%s AS bigint), CAST(%s AS bigint))"
    applied_at = TrackingEvent._meta.get_field("applied_at").get_db_prep_save(now, connection)
    with connection.cursor() as cursor:
        for start in range(0, len(events), APPLY_BATCH):
            batch = events[start : start + APPLY_BATCH]
            cursor.execute(
                f"WITH resolved (id, delivery_id, learner_id) AS (VALUES {', '.join([one_row] * len(batch))})"
                f" UPDATE {table} SET delivery_id = resolved.delivery_id, learner_id = resolved.learner_id,"
                f" recipient = '', applied_at = %s FROM resolved WHERE {table}.id = resolved.id",
                [value for event in batch for value in (event.pk, event.delivery_id, event.learner_id)] + [applied_at],
            )
    for event in events:
        event.recipient = ""


_INSERTED_FIELDS = [field for field in TrackingEvent._meta.concrete_fields if not field.primary_key]
INSERT_BATCH = 500  # rows per INSERT statement (12 parameters each)


def _rows_insert_new(rows: list[TrackingEvent]) -> list[TrackingEvent]:
    """Insert the rows whose (esp, event_key) is not stored yet; return those. One
    INSERT ... ON CONFLICT DO NOTHING RETURNING per INSERT_BATCH rows: the database says which
    were new, also when another request stores the same event at the same moment."""
    if not rows:
        return []
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in _INSERTED_FIELDS)
    one_row = "(" + ", ".join(["%s"] * len(_INSERTED_FIELDS)) + ")"
    new_keys = set()
    with transaction.atomic() if len(rows) > INSERT_BATCH else contextlib.nullcontext():
        for start in range(0, len(rows), INSERT_BATCH):
            batch = rows[start : start + INSERT_BATCH]
            sql = (
                f"INSERT INTO {quote(TrackingEvent._meta.db_table)} ({columns}) VALUES {', '.join([one_row] * len(batch))}"
                f" ON CONFLICT DO NOTHING RETURNING {quote('event_key')}"
            )
            params = [field.get_db_prep_save(getattr(row, field.attname), connection) for row in batch for field in _INSERTED_FIELDS]
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                new_keys.update(key for (key,) in cursor.fetchall())
    return [row for row in rows if row.event_key in new_keys]


class ApplyGatherer:
    """Gathers a web process's requests for the apply task: the first one waits `gather_ms`
    in a thread of the process's own, the rest of that moment's join it, then the task is asked
    for once (`ask`: the cache's mark, then the broker). At hundreds of events a second that
    saves each request a round trip to Redis, about a quarter of its CPU, for a fifth of a
    second more before a worker applies them.

    No event is left behind: the wait ends (`waiting` cleared) before `ask` runs, so an event
    committed before then is seen by the task asked for, and one committed after asks again.
    (A process stopped during the wait leaves its last events to beat's job, within a minute.)
    0 asks at once, in the caller's thread (the test suite, whose tasks run eagerly)."""

    def __init__(self, ask, gather_ms: int | None = None, pause=time.sleep):
        self._ask = ask
        self._gather_ms = gather_ms  # None: settings.TRACKING_APPLY_GATHER_MS, read at each request
        self._pause = pause
        self._lock = threading.Lock()
        self._waiting = False
        self._wakeups = queue.SimpleQueue()
        self._thread = None
        self._thread_pid = None

    @property
    def gather_ms(self) -> int:
        return settings.TRACKING_APPLY_GATHER_MS if self._gather_ms is None else self._gather_ms

    def request(self) -> None:
        if self.gather_ms <= 0:
            self._ask()
            return
        with self._lock:
            if self._waiting:
                return
            self._waiting = True
            self._thread_ensure()
        self._wakeups.put(None)

    def flush(self) -> None:
        """End the wait and ask (the gathering thread, after its pause)."""
        with self._lock:
            self._waiting = False
        self._ask()

    def _thread_ensure(self) -> None:
        # A process forked after a request (gunicorn --preload) does not inherit the thread.
        if self._thread is None or self._thread_pid != os.getpid() or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="tracking-apply-gatherer", daemon=True)
            self._thread_pid = os.getpid()
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wakeups.get()
            self._pause(self.gather_ms / 1000)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must live on; beat applies what is left
                logger.exception("Tracking events: asking for the apply task failed")


def _apply_task_queue() -> None:
    """Queue the apply task, unless one was queued in the last APPLY_DEBOUNCE_SECONDS and has not
    started yet (it clears the mark when it starts, so it sees these events). Never raises for the
    broker or the cache: the beat job applies what is left within a minute."""
    from scheduler.tasks import tracking_events_apply as task

    task_queue_once(APPLY_QUEUED_KEY, APPLY_DEBOUNCE_SECONDS, task, queue=settings.TRACKING_EVENTS_QUEUE, what="Tracking events")


# The web process's one gatherer (tests put their own in its place).
apply_gatherer = ApplyGatherer(_apply_task_queue)


def tracking_events_apply_soon() -> None:
    """Ask for the apply task, gathered with this process's other requests of the moment
    (ApplyGatherer). Never raises for the broker or the cache."""
    apply_gatherer.request()


def tracking_events_apply_started() -> None:
    task_started(APPLY_QUEUED_KEY, "Tracking events")


# --- Apply -------------------------------------------------------------------------------------


@dataclass
class ApplyReport:
    events: int = 0
    confirmed: int = 0  # ambiguous rows the provider's events resolved
    stopped: int = 0  # learners whose mail stopped


def tracking_events_apply(now: datetime.datetime, limit: int = APPLY_BATCH) -> ApplyReport:
    """Apply one batch of stored events (the oldest first). Transactional; idempotent (applying an
    event twice changes nothing more); safe to run concurrently. Returns what it did; `events`
    0 when nothing was left."""
    report = ApplyReport()
    with transaction.atomic():
        events = list(
            TrackingEvent.objects.select_for_update(skip_locked=True).filter(applied_at__isnull=True)
            .order_by("pk").only(
                "pk", "event_type", "refusal", "recipient_digest", "occurred_at", "message_id", "metadata_delivery",
                "metadata_learner", "recipient",
            )[:limit]
        )
        if not events:
            return report
        report.events = len(events)
        _events_resolve(events)
        _events_mark_applied(events, now)  # in this transaction: applied with everything below, or not at all
        _rows_record(events)
        report.confirmed = ledger.rows_resolved_by_provider(ACCEPTED, [Type.REJECTED], now)
        report.stopped = _addresses_stop(events, now)
    return report


def _rows_record(events) -> None:
    """Each email's first delivered, opened, clicked and bounced moment, from its stored events."""
    moments = dict(_ROW_MOMENTS)
    moments["bounced_at"] = None
    for field, types in moments.items():
        if types is None:
            ids = {e.delivery_id for e in events if e.delivery_id and e.refusal in (Refusal.HARD, Refusal.SOFT)}
            matching = Q(refusal__in=[Refusal.HARD, Refusal.SOFT])
        else:
            ids = {e.delivery_id for e in events if e.delivery_id and e.event_type in types}
            matching = Q(event_type__in=types)
        if not ids:
            continue
        first = (
            TrackingEvent.objects.filter(matching, delivery_id=OuterRef("pk"))
            .order_by().values("delivery_id").annotate(first=Min("occurred_at")).values("first")
        )
        Delivery.objects.filter(pk__in=ids, **{f"{field}__isnull": True}).update(**{field: Subquery(first)})


def _addresses_stop(events, now: datetime.datetime) -> int:
    stopping = [e for e in events if e.refusal in _STOP_REASONS or e.refusal == Refusal.SOFT]
    if not stopping:
        return 0
    current_digest = learner_email_digests({e.learner_id for e in stopping if e.learner_id})
    stopped = 0
    soft_learners = set()
    for event in stopping:
        about_learner = event.learner_id in current_digest and (
            not event.recipient_digest or event.recipient_digest == current_digest[event.learner_id]
        )
        if event.refusal == Refusal.SOFT:
            if about_learner:
                soft_learners.add(event.learner_id)
            continue
        reason = _STOP_REASONS[event.refusal]
        if about_learner:
            stopped += learner_mail_stop(event.learner_id, reason, now)
        elif event.recipient_digest:  # an address nobody has now (erased, or changed since)
            address_suppress(event.recipient_digest, reason)
    in_a_row = soft_bounces_in_a_row(soft_learners)
    for learner_id in sorted(soft_learners):
        if in_a_row[learner_id] >= SOFT_BOUNCE_LIMIT:
            stopped += learner_mail_stop(learner_id, Suppression.Reason.SOFT_BOUNCED, now)
    return stopped


def soft_bounces_in_a_row(learner_ids) -> dict[int, int]:
    """For each learner, how many different emails bounced softly since the last one delivered
    (or opened, clicked): a provider retrying one email counts once. Two queries, whatever the
    number of learners (a mailbox provider deferring a whole domain's mail brings thousands)."""
    learner_ids = set(learner_ids)
    last_delivered = dict(
        TrackingEvent.objects.filter(learner_id__in=learner_ids, event_type__in=_ROW_MOMENTS["delivered_at"])
        .order_by().values("learner_id").annotate(last=Max("occurred_at")).values_list("learner_id", "last")
    )
    emails: dict[int, set] = {learner_id: set() for learner_id in learner_ids}
    soft = TrackingEvent.objects.filter(learner_id__in=learner_ids, refusal=Refusal.SOFT)
    for learner_id, occurred_at, delivery_id, message_id, key in soft.values_list(
        "learner_id", "occurred_at", "delivery_id", "message_id", "event_key"
    ):
        if learner_id in last_delivered and occurred_at <= last_delivered[learner_id]:
            continue
        emails[learner_id].add(("delivery", delivery_id) if delivery_id else ("message", message_id or key))
    return {learner_id: len(found) for learner_id, found in emails.items()}


# Events waiting longer than this to be applied mean the task and beat's job are not running.
APPLY_BACKLOG_STALE_SECONDS = 600


def tracking_backlog_status(now: datetime.datetime) -> dict:
    """The stored events not applied yet (for /healthz): how many, and how long the oldest waits."""
    waiting = TrackingEvent.objects.filter(applied_at__isnull=True)
    oldest = waiting.order_by("received_at").values_list("received_at", flat=True).first()
    seconds = max(0, int((now - oldest).total_seconds())) if oldest else 0
    return {"ok": seconds <= APPLY_BACKLOG_STALE_SECONDS, "waiting": waiting.count(), "oldest_seconds": seconds}


# Orphaned events (for no email or learner of ours) are kept this long, for support; the others
# go with their email's ledger row (their round) or their learner (an erasure).
ORPHANS_KEPT = datetime.timedelta(days=90)


def tracking_orphans_delete(now: datetime.datetime, limit: int = 10_000) -> int:
    """Delete up to `limit` applied orphaned events older than ORPHANS_KEPT. Returns how many."""
    old = TrackingEvent.objects.filter(learner__isnull=True, received_at__lt=now - ORPHANS_KEPT, applied_at__isnull=False)
    ids = list(old.order_by("received_at").values_list("pk", flat=True)[:limit])
    return TrackingEvent.objects.filter(pk__in=ids).delete()[0] if ids else 0
