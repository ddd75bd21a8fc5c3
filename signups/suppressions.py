"""Addresses we stop mailing because the address itself said no: a refusal at send time, a hard
bounce, soft bounces in a row, a spam complaint or an unsubscribe at the provider (reported by
its tracking webhooks, scheduler/events.py), and how an organizer restarts mail to a bounced
address once its owner has fixed it.

A stopped learner gets nothing at all (Learner.unsubscribed_at, with the reason in
`unsubscribed_reason`), and the address's digest is in Suppression, so that an import cannot
add it again. Two kinds of stop:

- **The address failed** (refused, bounced, soft bounces): the learner keeps their place (round,
  group); only the mail stops. The learner's own page says why and lets them fix the address
  (`learner_address_fix`): the same one once their mailbox works again (taken at their word:
  nothing can be sent to it while it is stopped), or a new one, which changes only once they
  follow the link we mail to it (`learner_address_change`). Then an organizer may lift the stop
  (`learner_mail_restart`).
- **The person said no** (complaint, unsubscribe at the provider): like the learner's own
  unsubscribe, their enrollments end. Nobody but the owner, signing up and confirming again,
  can undo it; never an organizer.

A stronger reason replaces a weaker one (a complaint after a bounce stays a complaint), never
the reverse.
"""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from signups.emails import learner_email_queue
from signups.models import Enrollment, Learner, Suppression, email_digest, email_normalize
from signups.tokens import TokenInvalid, address_change_token, address_change_token_read

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


# --- The learner fixes their address on their own page ------------------------------------------


class AddressFixRefused(Exception):
    """The learner cannot fix their address this way now; the message says why, for them."""


class AddressTaken(AddressFixRefused):
    """Another learner has the new address already."""


@dataclass(frozen=True)
class AddressFix:
    email: str  # normalized
    same_address: bool  # True: marked fixed now; False: a link to confirm it went to `email`


def address_fix_problem(learner: Learner) -> str | None:
    """Why the learner cannot fix their address on their page now, or None if they may."""
    if learner.unsubscribed_at is None:
        return "Your emails are not stopped: there is nothing to fix."
    if learner.unsubscribed_reason not in Suppression.LIFTABLE:
        return "Your emails stopped because you asked us to stop. To get them again, sign up again and confirm."
    return None


def address_change_url(token: str) -> str:
    return f"{settings.SITE_URL}/address/{token}/"


def learner_address_fix(learner_id: int, email: str, now: datetime.datetime) -> AddressFix:
    """A learner whose address failed says, on their own page, which address works now.

    - Their current address (their mailbox works again): `address_fixed_at` is set at once. We
      cannot check it by mail (nothing may be sent to it while it is stopped): an organizer
      decides, and restarts the mail (learner_mail_restart).
    - Another address: a link to confirm it is queued to that address through the outbox
      (template address_confirm, expires in 7 days; a newer request replaces one still waiting
      to go). Nothing else changes until it is followed (learner_address_change). Whether
      another learner has that address is not said here (it would tell anyone with a page which
      addresses are ours), only when the link is followed.

    Transactional (the email is queued after the commit). Raises AddressFixRefused when their
    mail is not stopped because the address failed, TokenInvalid when the learner is gone."""
    email = email_normalize(email)
    with transaction.atomic():
        learner = Learner.objects.select_for_update().filter(pk=learner_id).first()
        if learner is None:
            raise TokenInvalid  # erased meanwhile: their page's link no longer works
        problem = address_fix_problem(learner)
        if problem:
            raise AddressFixRefused(problem)
        if email == learner.email:
            learner.address_fixed_at = now
            learner.save(update_fields=["address_fixed_at", "updated_at"])
            return AddressFix(email, same_address=True)
    token = address_change_token(learner.public_id, email, email_digest(learner.email))
    context = {"new_email": email, "confirm_url": address_change_url(token)}
    learner_email_queue(learner, "address_confirm", context, headers=None, now=now, to=email)
    return AddressFix(email, same_address=False)


@dataclass(frozen=True)
class AddressChange:
    learner: Learner
    already: bool  # the learner had this address already: nothing changed


def learner_address_change(token: str, now: datetime.datetime) -> AddressChange:
    """The learner followed the link mailed to their new address and pressed the button: it is
    their address from now on, marked fixed (`address_fixed_at`), for an organizer to restart
    their mail. The new address's own suppression, if any, goes: its owner asked for mail there.

    Idempotent (following it twice: `already`). Transactional, under the learner's lock. Raises
    AddressChangeExpired, TokenInvalid (forged or cut, the learner erased, or their address
    changed since the link was sent), AddressTaken, or AddressFixRefused (their mail is no
    longer stopped for a failed address, e.g. they complained since)."""
    change = address_change_token_read(token)
    learner_id = Learner.objects.filter(public_id=change.learner_public_id).values_list("pk", flat=True).first()
    if learner_id is None:
        raise TokenInvalid
    new_email = email_normalize(change.new_email)
    with transaction.atomic():
        learner = Learner.objects.select_for_update().filter(pk=learner_id).first()
        if learner is None:
            raise TokenInvalid  # erased meanwhile
        if learner.email == new_email:
            return AddressChange(learner, already=True)
        if email_digest(learner.email) != change.old_digest:
            raise TokenInvalid  # an older request: the address changed since
        problem = address_fix_problem(learner)
        if problem:
            raise AddressFixRefused(problem)
        taken = AddressTaken(
            f"{new_email} is already signed up with us, as another learner: we cannot move your enrollment to it. "
            "Give another address on your page."
        )
        if Learner.objects.filter(email=new_email).exists():
            raise taken
        learner.email = new_email
        learner.address_fixed_at = now
        try:
            with transaction.atomic():  # another learner may take the address at this very moment
                learner.save(update_fields=["email", "address_fixed_at", "updated_at"])
        except IntegrityError:
            raise taken from None
        Suppression.objects.filter(email_digest=email_digest(new_email)).delete()
    return AddressChange(learner, already=False)
