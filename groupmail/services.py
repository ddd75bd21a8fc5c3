"""Screening members' messages, and what organizers and learners change about a group's mail.

Screening (`inbound_screen_batch`) decides, once per received message, in batches, under a lock on
each group it was sent to, in this order (after GNU Mailman 3's rules):

1. Group mail off, or a message from a machine or a loop (groupmail/screening.py): refused,
   nobody answered.
2. Too big, unreadable, to no group we know, to a closed group, or not from a member: refused,
   and a real sender gets one short explanation (at most one per address and day).
3. From a member whose posting an organizer muted, or over the hourly limit of the member or
   the group: held for an organizer, who relays or discards it (`group_message_release`).
4. Otherwise relayed: a GroupMessage (the archive's entry) and one ledger row per member who
   receives the group's mail (not the sender, not those it was addressed to directly, not
   muted, paused, stopped or gone), queued for sending; the scheduler sends them.
"""

import datetime
import functools
import logging
from collections import Counter
from dataclasses import dataclass, field
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy

from django.conf import settings
from django.core.mail import EmailMessage as DjangoEmailMessage
from django.core.mail import get_connection
from django.db import transaction
from django.db.models import Count
from django.template.loader import render_to_string
from django.utils.html import strip_tags

from cohorts.models import StudyGroup, group_mail_address
from groupmail.models import GroupMailClosure, GroupMailMute, GroupMessage, InboundMessage, SenderNotice
from groupmail.screening import LOOP_HEADER, address_of, addresses_in, automated_reason, group_slugs, header_text
from scheduler.models import EmailKind
from scheduler.services import deliveries_send_soon, relayed_copies_add
from signups.models import email_digest
from signups.selectors import address_suppressed, group_mail_members_of

logger = logging.getLogger(__name__)

Refusal = InboundMessage.Refusal
# How long a screened message's envelope is kept: a provider's retry within it is recognised.
INBOUND_KEPT = datetime.timedelta(days=30)
BODY_TEXT_MAX = 100_000  # characters of a message's text kept for the group's page


@dataclass
class _Decision:
    status: str
    refusal: str = Refusal.NONE
    detail: str = ""
    group_slug: str = ""  # the group a refusal is about, named in the sender's explanation
    copies: list[int] = field(default_factory=list)  # ledger rows to queue once committed
    notify: str = ""  # the address to explain a refusal to, once committed


class _ParsedHeaders(HeaderRegistry):
    """The default policy's headers, each value parsed once: the default policy parses a header
    again at every read (the parser alone reads Content-Type a dozen times in a multipart
    message), which was most of a message's parse time. Header objects are immutable strings,
    so a parsed one can be handed out again. Performance only: the same headers as the default."""

    def __call__(self, name, value):
        if len(value) > _CACHED_HEADER_MAX_CHARS:
            return super().__call__(name, value)
        return self._parsed(name, value)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one registry for the process's life
    def _parsed(self, name, value):
        return super().__call__(name, value)


_CACHED_HEADER_MAX_CHARS = 998  # RFC 5322's line limit: longer ones are parsed each time, not kept
_PARSE_POLICY = default_policy.clone(header_factory=_ParsedHeaders())


def message_parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=_PARSE_POLICY).parsebytes(raw)


def message_text(message: EmailMessage) -> str:
    """A message's own text: its plain part, else its HTML part without the markup."""
    try:
        plain = message.get_body(preferencelist=("plain",))
        if plain is not None:
            return plain.get_content()
        html = message.get_body(preferencelist=("html",))
        return strip_tags(html.get_content()) if html is not None else ""
    except (LookupError, KeyError, ValueError, AttributeError, UnicodeError):
        return ""


# Messages screened in one transaction: the groups, members, mutes and recent counts they need
# are read once for all of them, and their copies written with one statement.
SCREEN_BATCH = 200


@dataclass
class ScreenReport:
    screened: int = 0
    relayed: int = 0
    held: int = 0
    refused: int = 0
    copies: int = 0
    outcomes: dict[int, str] = field(default_factory=dict)  # inbound id -> "relayed", "refused (not_member)" ...


def inbound_screen(inbound_id: int, now: datetime.datetime) -> str | None:
    """Screen one received message; its outcome, or None if another worker has it or had it."""
    return inbound_screen_batch(now, ids=[inbound_id]).outcomes.get(inbound_id)


def inbound_screen_batch(now: datetime.datetime, ids: list[int] | None = None, limit: int = SCREEN_BATCH) -> ScreenReport:
    """Screen up to `limit` received messages, oldest first (module docstring), in one
    transaction; any number of workers may run it at once (SKIP LOCKED: each takes others)."""
    report = ScreenReport()
    with transaction.atomic():
        waiting = InboundMessage.objects.select_for_update(skip_locked=True).filter(status=InboundMessage.Status.RECEIVED)
        if ids is not None:
            waiting = waiting.filter(pk__in=ids)
        rows = list(waiting.order_by("received_at", "pk")[:limit])
        if not rows:
            return report
        decisions = _Screening(now).decide(rows)
        for row in rows:
            decision = decisions[row.pk]
            row.status, row.refusal, row.detail = decision.status, decision.refusal, decision.detail[:500]
            row.screened_at, row.raw = now, b""
        InboundMessage.objects.bulk_update(rows, ["status", "refusal", "detail", "screened_at", "raw"])
    # Queued after the commit, never inside it: a worker must find the rows.
    copies = [pk for decision in decisions.values() for pk in decision.copies]
    deliveries_send_soon(copies, now)
    for row in rows:
        decision = decisions[row.pk]
        if decision.notify:
            sender_notice_queue(decision.notify, decision.refusal, decision.group_slug, now)
        if decision.refusal:
            logger.info("Inbound message %s refused (%s): %s", row.pk, decision.refusal, decision.detail)
        report.outcomes[row.pk] = f"{decision.status}{f' ({decision.refusal})' if decision.refusal else ''}"
        counted = {InboundMessage.Status.RELAYED: "relayed", InboundMessage.Status.HELD: "held"}.get(decision.status, "refused")
        setattr(report, counted, getattr(report, counted) + 1)
    report.screened, report.copies = len(rows), len(copies)
    return report


@dataclass
class _Candidate:
    """A message that passed the checks needing no database: to decide per group it was sent to."""

    row: InboundMessage
    message: EmailMessage
    senders: set[str]  # its From and envelope sender, case-folded: a member is either
    reply_to: str
    slugs: list[str]


class _Screening:
    """One batch's decisions. What they depend on is read once, under a lock on every group the
    batch writes to (in id order, so two batches never wait on each other in a circle), and the
    hourly counts are kept up to date as the batch accepts messages."""

    def __init__(self, now: datetime.datetime):
        self.now = now

    def decide(self, rows: list[InboundMessage]) -> dict[int, _Decision]:
        decisions, candidates = {}, []
        for row in rows:
            early = _screen_alone(row)
            if isinstance(early, _Decision):
                decisions[row.pk] = early
            else:
                candidates.append(early)
        if candidates:
            decisions.update(self._decide_for_groups(candidates))
        return decisions

    def _decide_for_groups(self, candidates: list[_Candidate]) -> dict[int, _Decision]:
        slugs = {slug for candidate in candidates for slug in candidate.slugs}
        # A group re-forming merged away has no members left to write to: as good as unknown.
        groups = {
            group.slug: group
            for group in StudyGroup.objects.select_for_update(of=("self",)).filter(slug__in=slugs, dissolved_at__isnull=True)
            .select_related("cohort__course").order_by("pk")
        }
        group_ids = [group.pk for group in groups.values()]
        self.closed = set(GroupMailClosure.objects.filter(group_id__in=group_ids).values_list("group_id", flat=True))
        self.members = group_mail_members_of(group_ids)
        self.mutes = set(GroupMailMute.objects.filter(group_id__in=group_ids).values_list("group_id", "learner_id", "kind"))
        self.sent_by, self.sent_to = _recent_counts(group_ids, self.now)
        self.relayed_before = set(
            GroupMessage.objects.filter(inbound__in=[candidate.row.pk for candidate in candidates]).values_list("inbound_id", "group_id")
        )
        entries: list[tuple[GroupMessage, _Candidate]] = []
        decisions = {}
        for candidate in candidates:
            decisions[candidate.row.pk] = self._decide(candidate, groups, entries)
        GroupMessage.objects.bulk_create([entry for entry, _ in entries])
        copies = self._copies_add([(entry, candidate) for entry, candidate in entries if entry.status == GroupMessage.Status.RELAYED])
        for inbound_id, ids in copies.items():
            decisions[inbound_id].copies.extend(ids)
        return decisions

    def _decide(self, candidate: _Candidate, groups: dict, entries: list) -> _Decision:
        targets = [groups[slug] for slug in candidate.slugs if slug in groups]
        if not targets:
            return _refused(Refusal.UNKNOWN_GROUP, f"to {', '.join(candidate.slugs) or 'no group address'}",
                            candidate.reply_to, candidate.slugs[0] if candidate.slugs else "")
        outcomes = [self._decide_for_group(candidate, group, entries) for group in targets]
        for status in (InboundMessage.Status.RELAYED, InboundMessage.Status.HELD):
            if any(outcome.status == status for outcome in outcomes):
                return _Decision(status, detail="; ".join(outcome.detail for outcome in outcomes if outcome.detail))
        refused = outcomes[0]
        return _refused(refused.refusal, refused.detail, candidate.reply_to, refused.group_slug)

    def _decide_for_group(self, candidate: _Candidate, group: StudyGroup, entries: list) -> _Decision:
        """Relay, hold or refuse the message for one group it was sent to."""
        if group.pk in self.closed:
            return _Decision(InboundMessage.Status.REFUSED, Refusal.CLOSED, f"{group.slug}: its mail is closed", group.slug)
        author = next((member for member in self.members.get(group.pk, ()) if member.email.casefold() in candidate.senders), None)
        if author is None:
            return _Decision(InboundMessage.Status.REFUSED, Refusal.NOT_MEMBER, f"{group.slug}: not from a member", group.slug)
        if (candidate.row.pk, group.pk) in self.relayed_before:  # screened before and set back: relayed once only
            return _Decision(InboundMessage.Status.RELAYED)
        hold = self._hold_reason(group.pk, author.learner_id)
        self.sent_by[(group.pk, author.learner_id)] += 1
        self.sent_to[group.pk] += 1
        message, row = candidate.message, candidate.row
        entries.append((GroupMessage(
            group=group, inbound=row, sender_id=author.learner_id,
            status=GroupMessage.Status.HELD if hold else GroupMessage.Status.RELAYED, hold_reason=hold,
            subject=header_text(message, "Subject")[:300], message_id=header_text(message, "Message-ID")[:255],
            raw=bytes(row.raw), body_text=message_text(message)[:BODY_TEXT_MAX], size=row.size,
            received_at=row.received_at, relayed_at=None if hold else self.now,
        ), candidate))
        if hold:
            return _Decision(InboundMessage.Status.HELD, detail=f"{group.slug}: held ({GroupMessage.HoldReason(hold).label.lower()})")
        return _Decision(InboundMessage.Status.RELAYED)

    def _hold_reason(self, group_id: int, learner_id: int) -> str:
        if (group_id, learner_id, GroupMailMute.Kind.POSTING) in self.mutes:
            return GroupMessage.HoldReason.MUTED
        if self.sent_by[(group_id, learner_id)] >= settings.GROUP_MAIL_MEMBER_MESSAGES_PER_HOUR:
            return GroupMessage.HoldReason.MEMBER_RATE
        if self.sent_to[group_id] >= settings.GROUP_MAIL_GROUP_MESSAGES_PER_HOUR:
            return GroupMessage.HoldReason.GROUP_RATE
        return GroupMessage.HoldReason.NONE

    def _copies_add(self, relayed: list[tuple[GroupMessage, _Candidate]]) -> dict[int, list[int]]:
        copies = _copies_add(
            [(entry, self.members.get(entry.group_id, ()), set(addresses_in(candidate.message, "To", "Cc"))) for entry, candidate in relayed],
            self.mutes, self.now,
        )
        by_inbound: dict[int, list[int]] = {}
        for entry, _ in relayed:
            by_inbound.setdefault(entry.inbound_id, []).extend(copies.get(entry.pk, ()))
        return by_inbound


def _screen_alone(row: InboundMessage) -> _Decision | _Candidate:
    """The checks a message needs nothing else for: refused here, or a candidate for its groups."""
    if not settings.GROUP_MAIL_DOMAIN:
        return _Decision(InboundMessage.Status.REFUSED, Refusal.OFF, "GROUP_MAIL_DOMAIN is not set")
    try:
        message = message_parse(bytes(row.raw))
    except Exception as error:  # the parser is lenient; anything it still cannot take is the message's fault
        return _Decision(InboundMessage.Status.REFUSED, Refusal.MALFORMED, f"unreadable: {error}")
    if reason := automated_reason(message, row.envelope_sender):
        return _Decision(InboundMessage.Status.REFUSED, Refusal.AUTOMATED, reason)
    sender = address_of(header_text(message, "From"))
    envelope_sender = address_of(row.envelope_sender)
    reply_to = sender or envelope_sender
    slugs = group_slugs(message, row.envelope_recipients)
    first_group = slugs[0] if slugs else ""
    if not sender:
        return _refused(Refusal.MALFORMED, "no readable From address", reply_to, first_group)
    if row.size > settings.GROUP_MAIL_MAX_MESSAGE_BYTES:
        return _refused(Refusal.TOO_BIG, f"{row.size} bytes, over {settings.GROUP_MAIL_MAX_MESSAGE_BYTES}", reply_to, first_group)
    return _Candidate(row, message, {sender, envelope_sender} - {""}, reply_to, slugs)


def _refused(refusal: str, detail: str, reply_to: str, group_slug: str) -> _Decision:
    return _Decision(InboundMessage.Status.REFUSED, refusal, detail, group_slug, notify=reply_to)


def _recent_counts(group_ids: list[int], now: datetime.datetime) -> tuple[Counter, Counter]:
    """Messages each member sent to each group, and each group received, in the last hour (not
    counting discarded ones): the hourly limits' counts, in one query."""
    by_sender: Counter = Counter()
    by_group: Counter = Counter()
    recent = (
        GroupMessage.objects.filter(group_id__in=group_ids, received_at__gt=now - datetime.timedelta(hours=1))
        .exclude(status=GroupMessage.Status.DISCARDED).values_list("group_id", "sender_id").annotate(count=Count("pk")).order_by()
    )
    for group_id, sender_id, count in recent:
        by_sender[(group_id, sender_id)] += count
        by_group[group_id] += count
    return by_sender, by_group


def _copies_add(relayed, mutes: set, now: datetime.datetime) -> dict[int, list[int]]:
    """One ledger row per member who receives the group's mail, for each (entry, members,
    addresses it was sent to) in `relayed`: entry id -> the rows' ids, to queue once committed.
    Not the sender; not a member the message was addressed to directly (they have it already,
    as Mailman's AvoidDuplicates has it); not one who muted the group."""
    rows = []
    for entry, members, addressed in relayed:
        for member in members:
            if (
                member.receives and member.learner_id != entry.sender_id
                and (entry.group_id, member.learner_id, GroupMailMute.Kind.RECEIVING) not in mutes
                and member.email.casefold() not in addressed
            ):
                rows.append((entry.group.cohort_id, entry.pk, member.learner_id))
    return relayed_copies_add(EmailKind.GROUP_MESSAGE, rows, now)


def inbound_screen_waiting(now: datetime.datetime) -> int:
    """Screen every message still waiting, batch by batch (its task was lost, or a flood)."""
    screened = 0
    while report := inbound_screen_batch(now):
        screened += report.screened
        if report.screened < SCREEN_BATCH:
            break
    return screened


def inbound_forget_old(now: datetime.datetime) -> int:
    """Delete envelopes screened more than INBOUND_KEPT ago (the archive keeps the relayed
    messages), and notices' marks from before yesterday."""
    deleted, _ = InboundMessage.objects.filter(screened_at__lt=now - INBOUND_KEPT).delete()
    SenderNotice.objects.filter(day__lt=now.date() - datetime.timedelta(days=1)).delete()
    return deleted


# --- Telling a sender why their message was not relayed ----------------------------------------


class NoticeNotSent(Exception):
    """The explanation is not to be sent (the address may not be mailed)."""


NOTICE_SUBJECTS = {
    Refusal.MALFORMED: "Your message to a study group could not be read",
    Refusal.TOO_BIG: "Your message to a study group was too large",
    Refusal.UNKNOWN_GROUP: "There is no study group at that address",
    Refusal.CLOSED: "This study group's mail is closed",
    Refusal.NOT_MEMBER: "Only the group's members can write to a study group",
}


def sender_notice_queue(address: str, refusal: str, group_slug: str, now: datetime.datetime) -> bool:
    """Queue one short explanation to `address`, unless it had one today or may not be mailed."""
    if refusal not in NOTICE_SUBJECTS or address_suppressed(address):
        return False
    _, created = SenderNotice.objects.get_or_create(sender_digest=email_digest(address), day=now.date(), defaults={"refusal": refusal})
    if not created:
        return False
    notice = {"to": address, "refusal": refusal, "group_address": group_mail_address(group_slug) if group_slug else ""}

    def queue():
        from groupmail.tasks import sender_notice_send

        try:
            sender_notice_send.delay(notice)
        except Exception as error:  # the broker is down: an explanation is not worth a retry loop
            logger.warning("Could not queue a group mail notice: %s", error)

    transaction.on_commit(queue)
    return True


def sender_notice_deliver(notice: dict) -> None:
    """Send one explanation. It says it is automatic (RFC 3834) and carries our loop header, so
    that an auto-reply to it is recognised and never answered again."""
    if address_suppressed(notice["to"]):
        raise NoticeNotSent("the address may not be mailed")
    context = {**notice, "max_megabytes": settings.GROUP_MAIL_MAX_MESSAGE_BYTES // (1024 * 1024), "site_url": settings.SITE_URL}
    body = render_to_string("groupmail/email/sender_notice.txt", context)
    message = DjangoEmailMessage(
        subject=NOTICE_SUBJECTS[notice["refusal"]], body=body, to=[notice["to"]],
        headers={"Auto-Submitted": "auto-replied", LOOP_HEADER: settings.GROUP_MAIL_DOMAIN or "groupmail"},
    )
    with get_connection() as connection:
        connection.send_messages([message])


# --- Organizers: held messages, muted members, closed groups -------------------------------------


class NotHeld(Exception):
    """The message is no longer held (another organizer relayed or discarded it)."""


def group_message_release(message_id: int, user, now: datetime.datetime) -> int:
    """Relay a held message to the group's members as they are now; returns how many copies."""
    with transaction.atomic():
        entry = GroupMessage.objects.select_for_update().select_related("group").filter(pk=message_id).first()
        if entry is None or entry.status != GroupMessage.Status.HELD:
            raise NotHeld
        entry.status, entry.relayed_at, entry.reviewed_by = GroupMessage.Status.RELAYED, now, user
        entry.save(update_fields=["status", "relayed_at", "reviewed_by"])
        addressed = set(addresses_in(message_parse(bytes(entry.raw)), "To", "Cc"))
        mutes = set(GroupMailMute.objects.filter(group_id=entry.group_id).values_list("group_id", "learner_id", "kind"))
        members = group_mail_members_of([entry.group_id]).get(entry.group_id, [])
        copies = _copies_add([(entry, members, addressed)], mutes, now).get(entry.pk, [])
    deliveries_send_soon(copies, now)
    return len(copies)


def group_message_discard(message_id: int, user) -> None:
    """Discard a held message: never relayed; it leaves the group's page, and its words are deleted."""
    changed = GroupMessage.objects.filter(pk=message_id, status=GroupMessage.Status.HELD).update(
        status=GroupMessage.Status.DISCARDED, reviewed_by=user, raw=b"", body_text=""
    )
    if not changed:
        raise NotHeld


def member_mute(group_id: int, learner_id: int, kind: str, now: datetime.datetime, user=None) -> bool:
    """Mute a member in one group's mail (GroupMailMute.Kind); True if it was not muted yet."""
    _, created = GroupMailMute.objects.get_or_create(
        group_id=group_id, learner_id=learner_id, kind=kind, defaults={"created_at": now, "created_by": user}
    )
    return created


def member_unmute(group_id: int, learner_id: int, kind: str) -> bool:
    deleted, _ = GroupMailMute.objects.filter(group_id=group_id, learner_id=learner_id, kind=kind).delete()
    return bool(deleted)


def group_mail_close(group_id: int, now: datetime.datetime, user=None) -> bool:
    """Close a group's mail: nothing sent to its address is relayed (senders are told)."""
    _, created = GroupMailClosure.objects.get_or_create(group_id=group_id, defaults={"closed_at": now, "closed_by": user})
    return created


def group_mail_reopen(group_id: int) -> bool:
    deleted, _ = GroupMailClosure.objects.filter(group_id=group_id).delete()
    return bool(deleted)


# --- A stuck learner's message to their group, from the check-in page ----------------------------


def group_message_on_behalf(message, now: datetime.datetime) -> bool:
    """Hand a learner's message to their group (signups.checkins.MessageOnBehalf: a stuck learner
    asked us, on the check-in page, to tell their group) to the door members' mail comes in by:
    stored, screened and relayed like any member's message (a member, not muted, within the
    hourly limits). Idempotent: the message's Message-ID and recipient are its dedupe key
    (inbound.dedupe_key), so handing it over again stores nothing. False when the group's mail
    is closed: nothing is stored (its screening would refuse it and mail the learner an
    explanation they need not read). Registered in signups.checkins.GROUP_TELLERS by
    groupmail/apps.py."""
    from email.utils import formataddr

    from groupmail.inbound import inbound_receive

    if GroupMailClosure.objects.filter(group_id=message.group_id).exists():
        return False
    group_address = group_mail_address(message.group_slug)
    email = EmailMessage()
    email["From"] = formataddr((message.learner_first_name, message.learner_email)) if message.learner_first_name else message.learner_email
    email["To"] = group_address
    email["Subject"] = message.subject
    email["Message-ID"] = message.message_id
    email.set_content(message.text)
    inbound_receive(
        email.as_bytes(), esp="checkin", now=now, envelope_sender=message.learner_email, envelope_recipients=[group_address],
    )
    return True
