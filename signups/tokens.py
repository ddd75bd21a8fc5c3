"""Signed links: they prove who a learner is without passwords and without stored state.

- A confirmation token names one enrollment and expires after 7 days.
- A learner token (manage my enrollment, unsubscribe) names the learner's public id and does
  not expire: it sits in every email, and unsubscribing from an old email must still work.
  Erasing the learner makes it worthless, because the id it names is gone.
- A waitlist invitation token names one waiting enrollment and the round it is invited to.
  It carries no age of its own: it works while that round's signup is open, which the join
  page checks when it is opened (a round whose signup is extended keeps its invitations
  working; one that closed says so, rather than "expired").
- An address change token names a learner (public id), the new address they asked for and a
  digest of the address they had when they asked; it expires after 7 days. Sent to the new
  address, it proves the learner can read mail there. The old address's digest makes it
  worthless once the learner's address changed some other way.
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
