"""Addresses we stop mailing because the address itself said no: a refusal at send time, a hard
bounce, soft bounces in a row, a spam complaint or an unsubscribe at the provider (reported by
its tracking webhooks, scheduler/events.py), and how an organizer restarts mail to a bounced
address once its owner has fixed it.

A stopped learner gets nothing at all (Learner.unsubscribed_at, with the reason in
`unsubscribed_reason`), and the address's digest is in Suppression, so that an import cannot
add it again. Two kinds of stop:

- **The address failed** (refused, bounced, soft bounces): the learner keeps their place (round,
  group); only the mail stops. The learner's own page says why and lets them give an address
  that works; then an organizer may lift the stop (`learner_mail_restart`).
- **The person said no** (complaint, unsubscribe at the provider): like the learner's own
  unsubscribe, their enrollments end. Nobody but the owner, signing up and confirming again,
  can undo it; never an organizer.

A stronger reason replaces a weaker one (a complaint after a bounce stays a complaint), never
the reverse.
"""

import datetime

from django.db import transaction

from signups.models import Enrollment, Learner, Suppression, email_digest

Reason = Suppression.Reason

# Weakest first: a reason may replace one before it, never one after it.
_STRENGTH = [Reason.SOFT_BOUNCED, Reason.REFUSED, Reason.BOUNCED, Reason.UNSUBSCRIBED, Reason.COMPLAINED, Reason.ERASED]
_PERSON_SAID_NO = (Reason.UNSUBSCRIBED, Reason.COMPLAINED)


class RestartRefused(Exception):
    """An organizer may not restart mail to this learner; the message says why."""


def _stronger(new: str, old: str) -> bool:
    if not old:
        return True
    return old in _STRENGTH and _STRENGTH.index(new) > _STRENGTH.index(old)


def _suppress_digest(digest: str, reason: str) -> None:
    suppression = Suppression.objects.select_for_update().filter(email_digest=digest).first()
    if suppression is None:
        Suppression.objects.get_or_create(email_digest=digest, defaults={"reason": reason})
    elif _stronger(reason, suppression.reason):
        suppression.reason = reason
        suppression.save(update_fields=["reason"])


def learner_mail_stop(learner_id: int, reason: str, now: datetime.datetime) -> bool:
    """Stop all mail to a learner because of `reason` (a Suppression.Reason other than ERASED).
    Transactional and idempotent; True when it changed the learner (stopped, or a stronger reason).
    A learner who is gone (erased meanwhile) is left alone."""
    with transaction.atomic():
        learner = Learner.objects.select_for_update().filter(pk=learner_id).first()
        if learner is None:
            return False
        _suppress_digest(email_digest(learner.email), reason)
        if learner.unsubscribed_at is not None and not _stronger(reason, learner.unsubscribed_reason):
            return False
        learner.unsubscribed_at = learner.unsubscribed_at or now
        learner.unsubscribed_reason = reason
        learner.save(update_fields=["unsubscribed_at", "unsubscribed_reason", "updated_at"])
        if reason in _PERSON_SAID_NO:
            learner.enrollments.filter(status__in=Enrollment.CURRENT).update(status=Enrollment.Status.LEFT, ended_at=now)
    return True


def address_suppress(digest: str, reason: str) -> None:
    """Suppress an address we know only by its digest (no learner has it): an event about an
    email to someone erased since, or an address an organizer's import may bring later."""
    with transaction.atomic():
        _suppress_digest(digest, reason)


def learner_mail_restart_problem(learner: Learner) -> str | None:
    """Why an organizer may not restart mail to this learner now, or None if they may."""
    if learner.unsubscribed_at is None:
        return "their mail is not stopped"
    if learner.unsubscribed_reason not in Suppression.LIFTABLE:
        reason = Reason(learner.unsubscribed_reason).label.lower() if learner.unsubscribed_reason in Reason.values else "unsubscribed"
        return f"their mail stopped because they said no ({reason}): only they can restart it, by signing up again"
    if learner.address_fixed_at is None or learner.address_fixed_at < learner.unsubscribed_at:
        return "they have not fixed their address on their page since it bounced"
    return None


def learner_mail_restart(learner_id: int, now: datetime.datetime) -> None:
    """An organizer restarts mail to a learner whose address bounced, after the learner fixed it
    (learner_mail_restart_problem). Their current enrollments count as mailable from now: the
    current week's email comes at once if it was not sent, earlier weeks stay skipped.
    Transactional; raises RestartRefused."""
    with transaction.atomic():
        learner = Learner.objects.select_for_update().filter(pk=learner_id).first()
        if learner is None:
            raise RestartRefused("the learner no longer exists")
        problem = learner_mail_restart_problem(learner)
        if problem:
            raise RestartRefused(problem)
        Suppression.objects.filter(email_digest=email_digest(learner.email), reason__in=Suppression.LIFTABLE).delete()
        learner.unsubscribed_at = None
        learner.unsubscribed_reason = ""
        learner.save(update_fields=["unsubscribed_at", "unsubscribed_reason", "updated_at"])
        learner.enrollments.filter(status=Enrollment.Status.ACTIVE).update(mailable_since=now)
