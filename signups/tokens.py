"""Signed links: they prove who a learner is without passwords and without stored state.

- A confirmation token names one enrollment and expires after 7 days.
- A learner token (manage my enrollment, unsubscribe) names the learner's public id and does
  not expire: it sits in every email, and unsubscribing from an old email must still work.
  Erasing the learner makes it worthless, because the id it names is gone.
- A waitlist invitation token names one waiting enrollment and the round it is invited to.
  It carries no age of its own: it works while that round's signup is open, which the join
  page checks when it is opened (a round whose signup is extended keeps its invitations
  working; one that closed says so, rather than "expired").
- A group move token names one enrollment and the quiet group it was offered a move out of
  (re-forming by activity). It carries no age: it works while the learner is still in that
  group of a running round, so the move happens at most once.
- An address change token names a learner (public id), the new address they asked for and a
  digest of the address they had when they asked; it expires after 7 days. Sent to the new
  address, it proves the learner can read mail there. The old address's digest makes it
  worthless once the learner's address changed some other way.
- A check-in token names a learner (public id), a round and one of its weeks: the links "I did
  this week", "I'm behind" and "I'm stuck" of that week's email. Like the learner token it
  carries no age (a link in an email must not die in a mailbox; erasing the learner makes it
  worthless): when it may be used is the week's answer window, which the check-in page checks
  (signups/checkins.py).
"""

import datetime
import uuid
from dataclasses import dataclass

from django.core import signing

CONFIRMATION_MAX_AGE = datetime.timedelta(days=7)
_CONFIRMATION_SALT = "signups.confirmation"
_LEARNER_SALT = "signups.learner"
_WAITLIST_SALT = "signups.waitlist"
ADDRESS_CHANGE_MAX_AGE = datetime.timedelta(days=7)
_ADDRESS_CHANGE_SALT = "signups.address-change"
_GROUP_MOVE_SALT = "signups.group-move"
_CHECKIN_SALT = "signups.checkin"


class TokenInvalid(Exception):
    """The token was forged, altered or truncated."""


class AddressChangeExpired(Exception):
    """An address change token that is genuine but older than ADDRESS_CHANGE_MAX_AGE."""


class TokenExpired(Exception):
    """The token is genuine but too old; `enrollment_id` says which enrollment it was for."""

    def __init__(self, enrollment_id: int):
        super().__init__("the link has expired")
        self.enrollment_id = enrollment_id


def confirmation_token(enrollment_id: int) -> str:
    return signing.dumps({"enrollment": enrollment_id}, salt=_CONFIRMATION_SALT)


def confirmation_token_read(token: str) -> int:
    """The enrollment id in a confirmation token. Raises TokenExpired or TokenInvalid."""
    try:
        return signing.loads(token, salt=_CONFIRMATION_SALT, max_age=CONFIRMATION_MAX_AGE)["enrollment"]
    except signing.SignatureExpired:
        return _expired(token)
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise TokenInvalid from None


def _expired(token: str):
    try:
        enrollment_id = signing.loads(token, salt=_CONFIRMATION_SALT)["enrollment"]
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise TokenInvalid from None
    raise TokenExpired(enrollment_id)


def learner_token(public_id: uuid.UUID) -> str:
    return signing.Signer(salt=_LEARNER_SALT).sign(str(public_id))


def learner_token_read(token: str) -> uuid.UUID:
    """The learner's public id in a learner token. Raises TokenInvalid."""
    try:
        return uuid.UUID(signing.Signer(salt=_LEARNER_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        raise TokenInvalid from None


def waitlist_invitation_token(enrollment_id: int, cohort_id: int) -> str:
    return signing.dumps({"enrollment": enrollment_id, "cohort": cohort_id}, salt=_WAITLIST_SALT)


def waitlist_invitation_token_read(token: str) -> tuple[int, int]:
    """The (enrollment id, cohort id) in a waitlist invitation token. Raises TokenInvalid."""
    try:
        payload = signing.loads(token, salt=_WAITLIST_SALT)
        return int(payload["enrollment"]), int(payload["cohort"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise TokenInvalid from None


@dataclass(frozen=True)
class AddressChange:
    """What an address change token says: this learner asked, while their address had digest
    `old_digest`, to have their mail sent to `new_email` from now on."""

    learner_public_id: uuid.UUID
    new_email: str
    old_digest: str


def address_change_token(public_id: uuid.UUID, new_email: str, old_digest: str) -> str:
    return signing.dumps({"learner": str(public_id), "email": new_email, "from": old_digest}, salt=_ADDRESS_CHANGE_SALT)


def address_change_token_read(token: str) -> AddressChange:
    """The address change a token asks for. Raises AddressChangeExpired or TokenInvalid."""
    try:
        payload = signing.loads(token, salt=_ADDRESS_CHANGE_SALT, max_age=ADDRESS_CHANGE_MAX_AGE)
        return AddressChange(uuid.UUID(payload["learner"]), str(payload["email"]), str(payload["from"]))
    except signing.SignatureExpired:
        raise AddressChangeExpired from None
    except (signing.BadSignature, KeyError, TypeError, ValueError, AttributeError):
        raise TokenInvalid from None


def group_move_token(enrollment_id: int, group_id: int) -> str:
    return signing.dumps({"enrollment": enrollment_id, "group": group_id}, salt=_GROUP_MOVE_SALT)


def group_move_token_read(token: str) -> tuple[int, int]:
    """The (enrollment id, group id it was offered to leave) in a group move token. Raises TokenInvalid."""
    try:
        payload = signing.loads(token, salt=_GROUP_MOVE_SALT)
        return int(payload["enrollment"]), int(payload["group"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise TokenInvalid from None


@dataclass(frozen=True)
class CheckInLink:
    """What a check-in token says: this learner, in this round, about this week."""

    learner_public_id: uuid.UUID
    cohort_id: int
    week_number: int


def checkin_token(public_id: uuid.UUID, cohort_id: int, week_number: int) -> str:
    # Plain text, not signing.dumps: a third of the length, and the three links of every weekly
    # email each carry one.
    return signing.Signer(salt=_CHECKIN_SALT).sign(f"{public_id}.{cohort_id}.{week_number}")


def checkin_token_read(token: str) -> CheckInLink:
    """The learner, round and week a check-in token names. Raises TokenInvalid."""
    try:
        public_id, cohort_id, week_number = signing.Signer(salt=_CHECKIN_SALT).unsign(token).split(".")
        return CheckInLink(uuid.UUID(public_id), int(cohort_id), int(week_number))
    except (signing.BadSignature, ValueError):
        raise TokenInvalid from None
