"""Verbs of learners: sign up, confirm, switch cohort, pause, leave, unsubscribe, erase.

The one rule every function here keeps: nobody is mailed against their will. Only the
person who owns an address can (re)start mail to it, by following a confirmation link
sent to it; an unsubscribed or erased address is suppressed until then.
"""

import dataclasses
import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from redis.exceptions import RedisError

from cohorts.models import Cohort, Course
from cohorts.selectors import cohort_by_id
from cohorts.services import cohort_lock
from signups.groups import enrollment_group_place
from signups.models import Enrollment, Erasure, Learner, Suppression, email_digest, email_normalize
from signups.selectors import (
    WaitlistInvitation, WaitlistProblem, cohort_seats_taken, enrollment_current, enrollments_to_invite,
    waitlist_invitation_read, waitlist_not_invited_to,
)
from signups.tokens import (
    TokenInvalid, confirmation_token, confirmation_token_read, learner_token, waitlist_invitation_token,
    waitlist_invitation_token_read,
)

logger = logging.getLogger(__name__)

# A person who signs up again within this time gets no second email (the first is on its way).
CONFIRMATION_RESEND_INTERVAL = datetime.timedelta(minutes=10)


class SignupRefused(Exception):
    """A self-service request that cannot be carried out; the message says why, for the learner."""


@dataclass(frozen=True)
class Signup:
    """What a person submitted on the signup form, already validated."""

    email: str
    first_name: str
    timezone: str
    experience: str
    wants_group: bool
    course: Course
    cohort: Cohort | None  # None: the waitlist for the course's next cohort


# --- Links and headers every email to a learner carries ------------------------------------


def learner_links(learner: Learner) -> dict[str, str]:
    """Absolute links for a learner's emails: their page, dropping back a round, unsubscribing."""
    token = learner_token(learner.public_id)
    manage = f"{settings.SITE_URL}/me/{token}/"
    return {
        "manage": manage,
        "switch": f"{manage}#switch",
        "unsubscribe": f"{settings.SITE_URL}/unsubscribe/{token}/",
        "site": f"{settings.SITE_URL}/",
    }


def list_unsubscribe_headers(unsubscribe_url: str) -> dict[str, str]:
    """The List-Unsubscribe headers (RFC 2369, and RFC 8058's one-click POST) for a course email."""
    return {"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def learner_email_headers(learner: Learner) -> dict[str, str]:
    return list_unsubscribe_headers(learner_links(learner)["unsubscribe"])


def _send(learner: Learner, template: str, context: dict, headers: dict | None = None, to: str = "") -> None:
    """Put one of this app's emails in the outbox (signups/emails.py): written in the caller's
    transaction, if any, and handed to a worker once it commits, so the person sees "check your
    inbox" at once whatever the provider does. The worker retries failures; one that fails for
    good releases the resend interval, letting them (or an organizer) try again at once.

    Call it after your `transaction.atomic()` block, as every service here does: the email then
    follows a change already committed, and tests, which never commit, see it sent (they run an
    on_commit callback only when it is registered outside the code's own blocks:
    mooc/testing/fixtures.py). `context` holds model instances (loaded again when the email is
    sent) and plain JSON values; raises TypeError for anything else. `to`: another address than
    the learner's (see emails.learner_email_queue)."""
    from django.utils import timezone

    from signups.emails import learner_email_queue  # that module renders through this one

    learner_email_queue(learner, template, context, headers, now=timezone.now(), to=to)


def _render_and_send(learner: Learner, template: str, context: dict, headers: dict | None, to: str = "") -> None:
    """Render one of this app's emails and hand it to the provider, now: a worker's part (the
    outbox's send, the waitlist's invitations), never a web request's. To the learner's address,
    or to `to` when given."""
    context = {"learner": learner, "links": learner_links(learner), **context}
    subject = render_to_string(f"signups/email/{template}_subject.txt", context).strip()
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=render_to_string(f"signups/email/{template}.txt", context),
        to=[to or learner.email],
        headers=headers or {},
    )
    message.attach_alternative(render_to_string(f"signups/email/{template}.html", context), "text/html")
    # Its tracking events find the learner by this (scheduler/events.py): a bounced confirmation
    # stops mail to the address like any other bounce. See scheduler/tracking.py for the limits.
    message.metadata = {"learner": str(learner.public_id), "kind": template[:80]}
    message.send()


# --- Signing up and confirming -----------------------------------------------------------


def _learner_for_update(signup: Signup) -> tuple[Learner, bool]:
    """The learner with this address, locked for this transaction; created if new.

    Of two simultaneous signups for a new address, the unique address makes the second
    insert wait for the first transaction and then find its row; a known address is
    locked, so its signups take turns.
    """
    learner, created = Learner.objects.get_or_create(
        email=email_normalize(signup.email),
        defaults={"first_name": signup.first_name, "timezone": signup.timezone, "experience": signup.experience},
    )
    if not created:  # a row we inserted is ours until commit already
        learner = _learner_lock(learner.pk)
    return learner, created


# Locks, always taken in this order so that two requests never wait for each other
# (an import's batch takes its import's row first, which nothing else locks: import_jobs.py):
# 1. the learner's row: one writer at a time for a learner and all their enrollments (signup,
#    confirm, move, pause, unsubscribe, erase, import); whoever comes second reads what the
#    first wrote, so a concurrent unsubscribe, pause or erasure is never undone;
# 2. the cohort's row (cohorts.services.cohort_lock): its seats and its groups;
# 3. enrollment rows, by writing them.


def _learner_lock(learner_id: int) -> Learner:
    """Lock a learner's row until the end of the transaction (see the lock order above)."""
    return Learner.objects.select_for_update().get(pk=learner_id)


class CohortFull(SignupRefused):
    """The round has no seat left."""


def _seat_take(cohort_id: int, now: datetime.datetime) -> Cohort:
    """Lock the cohort and make sure it has a seat for one more learner; the caller then
    writes the enrollment before its transaction ends, so the check and the insert are one
    step for every other writer. Raises CohortFull."""
    cohort = cohort_lock(cohort_id)
    if cohort.capacity is not None and cohort_seats_taken(cohort, now) >= cohort.capacity:
        raise CohortFull(f"{cohort.name} is full: please choose another round, or join the waitlist.")
    return cohort


def learner_signup(signup: Signup, now: datetime.datetime) -> Enrollment:
    """Sign a person up for a cohort (or the waitlist) and mail them a confirmation link.

    One person is one learner: an address already known is never a second learner.
    - Unconfirmed: their answers are updated and the confirmation is sent again.
    - Confirmed and waiting on the waitlist, signing up for an open round: they join it
      (they asked for the course already) and are mailed their manage link.
    - Confirmed, with a current enrollment in the course: nothing changes without their
      click; they are mailed a link to manage their enrollment instead.
    - Confirmed but left or unsubscribed: a new pending enrollment waits for confirmation.
    A seat in a round with a capacity is taken under the round's lock: raises CohortFull
    when it has none left, and nothing changes. At most one email per address per
    CONFIRMATION_RESEND_INTERVAL. Transactional; the email goes out after the commit, and a
    failed send is logged and may be retried at once. Returns the learner's current
    enrollment in the course.
    """
    joined_from_waitlist = False
    with transaction.atomic():
        learner, created = _learner_for_update(signup)
        if not created and not learner.is_confirmed:
            learner.first_name = signup.first_name or learner.first_name
            learner.timezone = signup.timezone
            learner.experience = signup.experience
        enrollment = enrollment_current(learner, signup.course)
        if enrollment is None:
            if signup.cohort is not None:
                _seat_take(signup.cohort.pk, now)
            enrollment = Enrollment.objects.create(
                learner=learner, course=signup.course, cohort=signup.cohort, wants_group=signup.wants_group
            )
        elif enrollment.status == Enrollment.Status.PENDING:
            if signup.cohort is not None and signup.cohort.pk != enrollment.cohort_id:
                _seat_take(signup.cohort.pk, now)
            enrollment.cohort = signup.cohort
            enrollment.wants_group = signup.wants_group
            enrollment.save(update_fields=["cohort", "wants_group", "updated_at"])
        elif enrollment.is_waitlisted and signup.cohort is not None:
            enrollment = _waitlisted_join(enrollment, signup.cohort, now)
            joined_from_waitlist = True
        due = learner.confirmation_sent_at is None or now - learner.confirmation_sent_at >= CONFIRMATION_RESEND_INTERVAL
        if due:
            # Claimed inside the transaction: of two simultaneous signups, one sends.
            learner.confirmation_sent_at = now
        learner.save()
    if due or joined_from_waitlist:  # joining is news they must hear, whatever the interval
        signup_email_send(learner, enrollment, joined_from_waitlist=joined_from_waitlist)
    return enrollment


def _waitlisted_join(enrollment: Enrollment, cohort: Cohort, now: datetime.datetime) -> Enrollment:
    """A confirmed learner waiting on the waitlist joins `cohort`: the same enrollment, now in
    a round. The caller holds the learner's lock; takes a seat (raises CohortFull)."""
    _seat_take(cohort.pk, now)
    enrollment.cohort = cohort
    enrollment.mailable_since = now if enrollment.status == Enrollment.Status.ACTIVE else None
    enrollment.save(update_fields=["cohort", "mailable_since", "updated_at"])
    enrollment_group_place(enrollment, now)  # when the round's groups are formed already
    return enrollment


def _email_slot_claim(learner: Learner, now: datetime.datetime) -> bool:
    """Claim the right to mail this learner a link now: one per CONFIRMATION_RESEND_INTERVAL.

    An atomic conditional update, so of two simultaneous requests exactly one wins.
    """
    window_start = now - CONFIRMATION_RESEND_INTERVAL
    claimed = Learner.objects.filter(pk=learner.pk).exclude(confirmation_sent_at__gt=window_start).update(confirmation_sent_at=now)
    return bool(claimed)


def signup_email_send(learner: Learner, enrollment: Enrollment, joined_from_waitlist: bool = False) -> None:
    """Mail the confirmation link for a pending enrollment, or the manage link for a current one
    (saying they joined the round, when their signup took them off the waitlist). Never raises."""
    if enrollment.status == Enrollment.Status.PENDING:
        confirm_url = f"{settings.SITE_URL}/confirm/{confirmation_token(enrollment.pk)}/"
        _send(learner, "confirmation", {"enrollment": enrollment, "confirm_url": confirm_url})
    else:
        context = {"enrollment": enrollment, "joined_from_waitlist": joined_from_waitlist}
        _send(learner, "already_enrolled", context, headers=learner_email_headers(learner))


def confirmation_resend(email: str, now: datetime.datetime) -> None:
    """Mail a fresh confirmation (or manage) link to an address we know; silently nothing otherwise.

    Same answer for known and unknown addresses: the caller says the same thing either way.
    """
    learner = Learner.objects.filter(email=email_normalize(email)).first()
    if learner is None:
        return
    enrollment = learner.enrollments.filter(status__in=Enrollment.CURRENT).select_related("course", "cohort").first()
    if enrollment is None:
        return
    if _email_slot_claim(learner, now):
        signup_email_send(learner, enrollment)


@dataclass(frozen=True)
class Confirmation:
    enrollment: Enrollment
    already_confirmed: bool


def enrollment_confirm(token: str, now: datetime.datetime) -> Confirmation:
    """Confirm the address and the enrollment a confirmation link names. Idempotent.

    Confirming is the owner's own request for mail: it lifts an earlier unsubscribe or
    erasure of the address. Raises TokenExpired or TokenInvalid (also when the enrollment
    it named has since been replaced or erased).
    """
    enrollment_id = confirmation_token_read(token)
    learner_id = Enrollment.objects.filter(pk=enrollment_id).values_list("learner_id", flat=True).first()
    if learner_id is None:
        raise TokenInvalid
    with transaction.atomic():
        learner = _learner_lock(learner_id)
        enrollment = Enrollment.objects.select_related("course", "cohort").filter(pk=enrollment_id).first()
        if enrollment is None or enrollment.status not in Enrollment.CURRENT:
            raise TokenInvalid
        enrollment.learner = learner
        if enrollment.status != Enrollment.Status.PENDING:
            return Confirmation(enrollment, already_confirmed=True)
        if enrollment.cohort_id is not None:
            cohort_lock(enrollment.cohort_id)  # before the enrollment changes: the lock order
        learner.confirmed_at = learner.confirmed_at or now
        learner.unsubscribed_at = None
        learner.unsubscribed_reason = ""
        learner.save(update_fields=["confirmed_at", "unsubscribed_at", "unsubscribed_reason", "updated_at"])
        Suppression.objects.filter(email_digest=email_digest(learner.email)).delete()
        enrollment.status = Enrollment.Status.ACTIVE
        enrollment.mailable_since = now
        enrollment.save(update_fields=["status", "mailable_since", "updated_at"])
        enrollment_group_place(enrollment, now)  # when the cohort's groups are formed already
    return Confirmation(enrollment, already_confirmed=False)


# --- Self-service ----------------------------------------------------------------------------


def _enrollment_move(enrollment: Enrollment, cohort: Cohort, now: datetime.datetime) -> Enrollment:
    """Move the learner's current enrollment in the course to `cohort`; returns the enrollment now current.

    Works from the state read under the learner's lock, never the caller's copy: a pause
    or leave that landed meanwhile is kept. A pending one simply changes cohort; a waitlisted
    one joins it; a confirmed one is closed as SWITCHED and a new one starts in `cohort` with
    the same status (a paused learner stays paused), which takes the learner out of their old
    group and gives them the new cohort from its current week. Raises SignupRefused (the
    enrollment has ended, or it is in `cohort` already) and CohortFull.
    """
    with transaction.atomic():
        _learner_lock(enrollment.learner_id)
        current = Enrollment.objects.filter(
            learner_id=enrollment.learner_id, course_id=enrollment.course_id, status__in=Enrollment.CURRENT
        ).first()
        if current is None:
            raise SignupRefused("This enrollment has ended.")
        if current.cohort_id == cohort.pk:
            raise SignupRefused("You are already in that round.")
        if current.status == Enrollment.Status.PENDING:
            _seat_take(cohort.pk, now)
            current.cohort = cohort
            current.save(update_fields=["cohort", "updated_at"])
            return current
        if current.is_waitlisted:
            return _waitlisted_join(current, cohort, now)
        _seat_take(cohort.pk, now)
        status = current.status  # as locked: a pause that landed before us stays
        current.status, current.ended_at = Enrollment.Status.SWITCHED, now
        current.save(update_fields=["status", "ended_at", "updated_at"])
        moved = Enrollment.objects.create(
            learner_id=current.learner_id, course_id=current.course_id, cohort=cohort,
            status=status, wants_group=current.wants_group, switched_from_id=current.cohort_id,
            mailable_since=now if status == Enrollment.Status.ACTIVE else None,
        )
        enrollment_group_place(moved, now)  # when the new cohort's groups are formed already
        return moved


def enrollment_switch_cohort(enrollment: Enrollment, cohort: Cohort, today: datetime.date, now: datetime.datetime) -> Enrollment:
    """The learner drops back (or moves on) to a later open cohort of the course: "the next round".

    Raises SignupRefused when the cohort is not one they may pick themselves, CohortFull
    when it has no seat left.
    """
    if cohort.course_id != enrollment.course_id:
        raise SignupRefused("That round belongs to another course.")
    if not (cohort.signup_opens_on <= today <= cohort.signup_closes_on):
        raise SignupRefused("That round is not open for signup any more.")
    if cohort.pk == enrollment.cohort_id:
        raise SignupRefused("You are already in that round.")
    if enrollment.cohort is not None and cohort.start_date <= enrollment.cohort.start_date:
        raise SignupRefused("You can only move to a round that starts later than yours.")
    return _enrollment_move(enrollment, cohort, now)


@dataclass
class MoveReport:
    moved: int = 0
    skipped: int = 0  # not enrolled in the course now, or in that cohort already
    full: int = 0  # the cohort had no seat left for them


def learners_move_to_cohort(learners, cohort: Cohort, now: datetime.datetime) -> MoveReport:
    """An organizer moves learners into `cohort` (any cohort of its course, open or not).

    Only current enrollments move: a learner who left, or never enrolled in the course, is
    skipped rather than enrolled behind their back. The cohort's capacity holds for
    organizers too. Each learner moves in a transaction of their own.
    """
    report = MoveReport()
    for learner in learners:
        enrollment = learner.enrollments.filter(course_id=cohort.course_id, status__in=Enrollment.CURRENT).first()
        if enrollment is None or enrollment.cohort_id == cohort.pk:
            report.skipped += 1
            continue
        try:
            _enrollment_move(enrollment, cohort, now)
        except CohortFull:
            report.full += 1
        except SignupRefused:  # it ended, or moved there, since the line above
            report.skipped += 1
        else:
            report.moved += 1
    return report


def learners_confirmation_resend(learners, now: datetime.datetime) -> int:
    """An organizer re-sends the confirmation link to learners still waiting to confirm.

    Skips the confirmed, the unsubscribed and anyone mailed in the last CONFIRMATION_RESEND_INTERVAL.
    Returns how many were sent.
    """
    sent = 0
    for learner in learners:
        if learner.is_confirmed or learner.is_unsubscribed:
            continue
        enrollment = learner.enrollments.filter(status=Enrollment.Status.PENDING).select_related("course", "cohort").first()
        if enrollment is None:
            continue
        if _email_slot_claim(learner, now):
            signup_email_send(learner, enrollment)
            sent += 1
    return sent


def _enrollment_set_status(enrollment: Enrollment, allowed_from: tuple, status: str, now: datetime.datetime) -> bool:
    """Move the learner's current enrollment in the course to `status`; False when it already
    was there. Acts on the enrollment current under the learner's lock, not the caller's copy:
    a pause sent while an organizer moves the learner pauses the enrollment they were moved
    to. Raises SignupRefused."""
    with transaction.atomic():
        _learner_lock(enrollment.learner_id)
        current = Enrollment.objects.filter(
            learner_id=enrollment.learner_id, course_id=enrollment.course_id, status__in=Enrollment.CURRENT
        ).first()
        if current is None:
            if enrollment.status == status:
                return False
            raise SignupRefused("This enrollment has ended.")
        if current.status == status:
            return False
        if current.status not in allowed_from:
            raise SignupRefused("Confirm your address first.")
        changes = {"status": status, "ended_at": now if status not in Enrollment.CURRENT else None}
        if status == Enrollment.Status.ACTIVE:
            changes["mailable_since"] = now  # weeks that ended while paused are not theirs
        Enrollment.objects.filter(pk=current.pk).update(**changes, updated_at=now)
    for name, value in changes.items():
        setattr(enrollment, name, value)
    return True


def enrollment_pause(enrollment: Enrollment, now: datetime.datetime) -> bool:
    """Stop the weekly emails until resumed. Idempotent: False when already paused."""
    return _enrollment_set_status(enrollment, (Enrollment.Status.ACTIVE,), Enrollment.Status.PAUSED, now)


def enrollment_resume(enrollment: Enrollment, now: datetime.datetime) -> bool:
    """Start the weekly emails again: the current week at once, if they missed it. Idempotent:
    False when already active."""
    return _enrollment_set_status(enrollment, (Enrollment.Status.PAUSED,), Enrollment.Status.ACTIVE, now)


def enrollment_leave(enrollment: Enrollment, now: datetime.datetime) -> bool:
    """Leave the course: no more of its emails. Idempotent: False when already left."""
    return _enrollment_set_status(enrollment, Enrollment.CURRENT, Enrollment.Status.LEFT, now)


def learner_unsubscribe(learner: Learner, now: datetime.datetime) -> bool:
    """Stop every email to this learner's address. Idempotent: False when already unsubscribed.

    Their current enrollments end too (LEFT): coming back means signing up and confirming again.
    Mail stopped because the address failed becomes an unsubscribe (the person said no: no
    organizer may restart it), keeping the moment it stopped.
    """
    unsubscribed = Suppression.Reason.UNSUBSCRIBED
    with transaction.atomic():
        _learner_lock(learner.pk)  # an import or a move under way finishes first, and cannot undo this
        changed = Learner.objects.filter(pk=learner.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=now, unsubscribed_reason=unsubscribed
        ) or Learner.objects.filter(pk=learner.pk, unsubscribed_reason__in=Suppression.LIFTABLE).update(unsubscribed_reason=unsubscribed)
        learner.enrollments.filter(status__in=Enrollment.CURRENT).update(status=Enrollment.Status.LEFT, ended_at=now)
        digest = email_digest(learner.email)
        Suppression.objects.filter(email_digest=digest, reason__in=Suppression.LIFTABLE).update(reason=unsubscribed)
        Suppression.objects.get_or_create(email_digest=digest, defaults={"reason": unsubscribed})
    learner.unsubscribed_at = learner.unsubscribed_at or now
    return bool(changed)


def learner_erase(learner: Learner, today: datetime.date) -> None:
    """Erase a learner and their personal data. Transactional.

    What stays: an anonymous count (one Erasure per learner, with the cohort they were in,
    for statistics) and the address's digest in Suppression, so that nothing mails it again
    until its owner signs up and confirms anew.
    """
    with transaction.atomic():
        _learner_lock(learner.pk)  # first: an import or a move under way finishes, or waits
        current = learner.enrollments.filter(status__in=Enrollment.CURRENT).exclude(cohort=None).first()
        Erasure.objects.create(cohort_id=current.cohort_id if current else None, erased_on=today)
        Suppression.objects.update_or_create(
            email_digest=email_digest(learner.email), defaults={"reason": Suppression.Reason.ERASED}
        )
        learner.delete()


def learner_data_export(learner: Learner) -> dict:
    """Everything we hold about a learner, as plain data (their right of access)."""
    enrollments = learner.enrollments.select_related("course", "cohort").order_by("created_at")
    moment = lambda value: value.isoformat() if value else None  # noqa: E731
    return {
        "email": learner.email,
        "first_name": learner.first_name,
        "timezone": learner.timezone,
        "experience": learner.experience,
        "signed_up_at": moment(learner.created_at),
        "confirmed_at": moment(learner.confirmed_at),
        "unsubscribed_at": moment(learner.unsubscribed_at),
        "unsubscribed_reason": learner.unsubscribed_reason or None,
        "address_fixed_at": moment(learner.address_fixed_at),
        "enrollments": [
            {
                "course": enrollment.course.title,
                "cohort": enrollment.cohort.name if enrollment.cohort else None,
                "cohort_starts_on": enrollment.cohort.start_date.isoformat() if enrollment.cohort else None,
                "status": enrollment.status,
                "wants_group": enrollment.wants_group,
                "created_at": moment(enrollment.created_at),
                "ended_at": moment(enrollment.ended_at),
            }
            for enrollment in enrollments
        ],
    }


def manage_link_send(email: str, now: datetime.datetime) -> None:
    """Mail a fresh link to the self-service page to a known, subscribed address; nothing otherwise."""
    learner = Learner.objects.filter(email=email_normalize(email), unsubscribed_at__isnull=True).first()
    if learner is None:
        return
    if _email_slot_claim(learner, now):
        _send(learner, "manage_link", {}, headers=learner_email_headers(learner))


# --- The waitlist: invitations to a round that opens, taken up with one click ------------------

# Invitations are claimed and sent in batches of this many: a claim holds its rows' locks only
# while it writes them, and a long waitlist is never all in memory.
WAITLIST_INVITE_BATCH = 500


def waitlist_join_url(enrollment_id: int, cohort_id: int) -> str:
    return f"{settings.SITE_URL}/waitlist/{waitlist_invitation_token(enrollment_id, cohort_id)}/join/"


def waitlist_invite(cohort: Cohort, now: datetime.datetime) -> int:
    """Invite everyone waiting on the waitlist of the cohort's course to join it: an email each
    with a one-click link, once per round (who: selectors.enrollments_to_invite).

    Idempotent, and safe beside another run: each batch is claimed in one conditional UPDATE
    (invited_to = cohort, invited_at = now, unless invited to this round or a later one already),
    and only what that UPDATE wrote is mailed, so neither a rerun nor a run at the same moment
    mails anybody twice. The emails go after the claim commits. A failed send is logged and its
    claim released (the invitation it replaced is put back), so the next run tries it again;
    never raises for a send. Nothing when the round's signup is not open on `now`'s date.
    Returns how many invitations were sent.
    """
    if not cohort.signup_opens_on <= now.date() <= cohort.signup_closes_on:
        return 0
    sent, after = 0, 0
    while (batch := _waitlist_invitations_claim(cohort, now, after)) is not None:
        after, claimed = batch
        for enrollment, previous in claimed:
            sent += _waitlist_invitation_send(enrollment, cohort, now, previous)
    return sent


def _waitlist_invitations_claim(cohort: Cohort, now: datetime.datetime, after: int) -> tuple[int, list] | None:
    """Claim the next batch of invitations to `cohort`, among enrollments after id `after`:
    (the last id read, [(enrollment claimed, (invited_to id, invited_at) it carried before)]),
    or None when none is left to read.

    The rows are locked before the UPDATE: of two runs at once, the second waits for the first
    to commit, then reads those rows again and finds them invited (PostgreSQL re-checks a
    locked row). Should a read still be stale, the UPDATE's condition refuses the rows another
    run claimed since, and only those this UPDATE wrote (invited_at = now) are ours. Only
    enrollment rows are locked, while holding no other lock: the lock order holds.
    """
    with transaction.atomic():
        waiting = list(enrollments_to_invite(cohort).filter(pk__gt=after).select_for_update(of=("self",))[:WAITLIST_INVITE_BATCH])
        if not waiting:
            return None
        ids = [enrollment.pk for enrollment in waiting]
        claimed = Enrollment.objects.filter(waitlist_not_invited_to(cohort), pk__in=ids).update(invited_to=cohort, invited_at=now)
        if claimed != len(waiting):
            ours = set(Enrollment.objects.filter(pk__in=ids, invited_to=cohort, invited_at=now).values_list("pk", flat=True))
            waiting = [enrollment for enrollment in waiting if enrollment.pk in ours]
    return ids[-1], [(enrollment, (enrollment.invited_to_id, enrollment.invited_at)) for enrollment in waiting]


def _waitlist_invitation_send(enrollment: Enrollment, cohort: Cohort, now: datetime.datetime, previous: tuple) -> bool:
    """Mail one claimed invitation; False when it failed, which is logged and releases the claim."""
    context = {
        "cohort": cohort, "course": cohort.course, "today": now.date(),
        "join_url": waitlist_join_url(enrollment.pk, cohort.pk),
    }
    try:
        _render_and_send(enrollment.learner, "waitlist_invitation", context, learner_email_headers(enrollment.learner))
    except Exception:
        logger.exception("Could not send the invitation to %s to learner %s", cohort.slug, enrollment.learner_id)
        invited_to_id, invited_at = previous
        # Only our own claim: whatever wrote the row since is left alone.
        Enrollment.objects.filter(pk=enrollment.pk, invited_to=cohort, invited_at=now).update(
            invited_to_id=invited_to_id, invited_at=invited_at
        )
        return False
    return True


class WaitlistJoinRefused(SignupRefused):
    """The learner cannot join the round they were invited to; `invitation.problem` says why.
    Nothing changed."""

    def __init__(self, invitation: WaitlistInvitation):
        super().__init__(str(invitation.problem))
        self.invitation = invitation


@dataclass(frozen=True)
class WaitlistJoin:
    enrollment: Enrollment  # in the round, its learner loaded
    already: bool  # they were in the round already: nothing changed


def waitlist_join(token: str, now: datetime.datetime) -> WaitlistJoin:
    """Take up an invitation from the waitlist: the invited enrollment joins the round (the same
    enrollment, now in it; a paused learner stays paused; placed in a group when the round's
    groups are formed already).

    Idempotent: a learner in the round already gets `already`, and nothing changes. Works from
    what it reads under the learner's lock, so an unsubscribe, a leave or a move that landed
    first wins. Transactional; the seat is taken under the round's lock. Raises TokenInvalid
    (forged or cut, or the learner or the round is gone) and WaitlistJoinRefused (unsubscribed,
    left, in another round, the round's signup not open, the round full).
    """
    enrollment_id, cohort_id = waitlist_invitation_token_read(token)
    invited = Enrollment.objects.filter(pk=enrollment_id).values("learner_id", "course_id").first()
    cohort = cohort_by_id(cohort_id)
    if invited is None or cohort is None or cohort.course_id != invited["course_id"]:
        raise TokenInvalid
    try:
        with transaction.atomic():
            learner = _learner_lock(invited["learner_id"])
            invitation = waitlist_invitation_read(learner, enrollment_id, cohort, now)
            if invitation.joined:
                invitation.current.learner = learner
                return WaitlistJoin(invitation.current, already=True)
            if invitation.problem is not None:
                raise WaitlistJoinRefused(invitation)
            enrollment = _waitlisted_join(invitation.current, cohort, now)
    except CohortFull:
        raise WaitlistJoinRefused(dataclasses.replace(invitation, problem=WaitlistProblem.FULL)) from None
    enrollment.learner = learner
    return WaitlistJoin(enrollment, already=False)


# --- Abuse ---------------------------------------------------------------------------------


def signup_rate_limited(ip_address: str, email: str) -> str | None:
    """Count a signup attempt; "ip" or "address" when that one is over its hourly limit, else None.

    Fixed one-hour windows in the cache, so the limits hold across every web process
    when the cache is Redis. A cache that is down or hangs (REDIS_SOCKET_TIMEOUT) lets the
    signup through with a logged warning: double opt-in still protects the address, and a
    cache outage must not take signups down.
    """
    try:
        return _signup_rate_counted(ip_address, email)
    except (RedisError, OSError) as error:  # refused, timed out, or the connection dropped
        logger.warning("Signup rate limits not counted, the cache is unreachable: %s", error)
        return None


def _signup_rate_counted(ip_address: str, email: str) -> str | None:
    limits = [
        ("ip", ip_address, settings.SIGNUP_LIMIT_PER_IP_PER_HOUR),
        ("address", email_digest(email), settings.SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR),
    ]
    for kind, who, limit in limits:
        key = f"signups:rate:{kind}:{who}"
        cache.add(key, 0, timeout=3600)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=3600)
            count = 1
        if count > limit:
            return kind
    return None


def learner_address_refused(learner_id: int, now: datetime.datetime) -> None:
    """The mail provider refused a learner's address for good while we sent: never mail it again
    until it is fixed (signups/suppressions.py: the learner keeps their place; an organizer may
    restart the mail once the learner has fixed the address)."""
    from signups.suppressions import learner_mail_stop

    learner_mail_stop(learner_id, Suppression.Reason.REFUSED, now)
