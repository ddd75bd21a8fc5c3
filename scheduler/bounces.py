"""What a provider's tracking event says about the recipient's address: one decision per ESP, here.

Anymail normalizes event types, but not how permanent a bounce is: Amazon SES and Postmark
report soft bounces as BOUNCED too, Mailgun and Mailjet some as DEFERRED. So the raw event
decides, ESP by ESP:

| Refusal     | Events                                                                                 | Consequence (scheduler/events.py)         |
|-------------|----------------------------------------------------------------------------------------|-------------------------------------------|
| hard        | a permanent bounce: SES bounceType Permanent, Postmark HardBounce, Brevo hard_bounce or | the address is suppressed at once          |
|             | invalid_email, SparkPost bounce classes 10, 30, Mailjet hard_bounce, SendGrid bounce    | (an organizer may lift it once fixed)      |
|             | type "bounce", Mailgun permanent failures, Resend Permanent (or, in older payloads, a   |                                            |
|             | "hard bounce" message); a Postmark SubscriptionChange for a HardBounce; a rejection     |                                            |
|             | because the provider already knows the address bounced or is invalid                   |                                            |
| soft        | any other bounce or deferral; a Mailgun permanent failure for a message too "old"       | suppressed after SOFT_BOUNCE_LIMIT emails  |
|             | (temporary failures retried for hours)                                                 | in a row bounced softly, none delivered    |
| complaint   | a spam complaint; a rejection (Mailgun: a failure "suppress-complaint") for an earlier  | suppressed for good (never lifted)         |
|             | complaint                                                                              |                                            |
| unsubscribe | an unsubscribe at the provider (list-unsubscribe, its own link, manual suppression;    | the learner is unsubscribed                |
|             | Mailgun: a failure "suppress-unsubscribe")                                             |                                            |
| ours        | a bounce whose answer is 5.7.x (policy: our content, server or reputation), a virus     | recorded, nobody suppressed: a fault on    |
|             | notice, a block by the provider's policy (Mailgun "espblock")                           | our side never touches learners            |
"""

import re

from anymail.signals import EventType, RejectReason

from scheduler.models import TrackingEvent

Refusal = TrackingEvent.Refusal

# RFC 3463: 5.7.x is security or policy, about the sender (as in scheduler/providers.py).
_ABOUT_US = re.compile(r"(?:^|[\s;:(\[])5\.7\.\d{1,3}\b")

_SPARKPOST_HARD_CLASSES = {"10", "30", "90"}
# Mailgun's permanent failures that are not about a mailbox that does not exist: an address
# Mailgun itself suppressed after a complaint or an unsubscribe, a message that stayed
# undeliverable too long (temporary failures retried for hours), a block by the receiver.
_MAILGUN_PERMANENT_REASONS = {
    "suppress-complaint": Refusal.COMPLAINT, "suppress-unsubscribe": Refusal.UNSUBSCRIBE,
    "old": Refusal.SOFT, "espblock": Refusal.OURS,
}
_SPARKPOST_OURS_CLASSES = {"25", "50", "51", "52", "53", "54"}


def _bounce_permanence(esp: str, raw) -> str:
    """hard, soft or ours (or, for Mailgun's suppressions, complaint or unsubscribe), for an
    event Anymail calls BOUNCED."""
    raw = raw if isinstance(raw, dict) else {}
    match esp:
        case "amazon_ses":
            return Refusal.HARD if raw.get("bounce", {}).get("bounceType") == "Permanent" else Refusal.SOFT
        case "postmark":
            # A SubscriptionChange that suppressed the address says why in SuppressionReason.
            kind = raw.get("Type") or raw.get("SuppressionReason")
            return Refusal.HARD if kind == "HardBounce" else (Refusal.OURS if kind == "VirusNotification" else Refusal.SOFT)
        case "brevo":
            return Refusal.SOFT if raw.get("event") == "soft_bounce" else Refusal.HARD
        case "sparkpost":
            event = (raw.get("msys") or {})
            event = next(iter(event.values()), {}) if isinstance(event, dict) else {}
            bounce_class = str(event.get("bounce_class", ""))
            if bounce_class in _SPARKPOST_OURS_CLASSES:
                return Refusal.OURS
            return Refusal.HARD if bounce_class in _SPARKPOST_HARD_CLASSES else Refusal.SOFT
        case "mailjet":
            return Refusal.HARD if raw.get("hard_bounce") else Refusal.SOFT
        case "sendgrid":
            return Refusal.SOFT if raw.get("type") == "blocked" else Refusal.HARD
        case "resend":
            bounce = ((raw.get("data") or {}).get("bounce") or {})
            if "type" in bounce:
                return Refusal.HARD if bounce["type"] == "Permanent" else Refusal.SOFT
            # Older payloads carry only the message ("... sent a hard bounce message ...",
            # "... has suppressed sending ...", "... because the recipient's inbox was full").
            message = str(bounce.get("message", ""))
            return Refusal.HARD if "hard bounce" in message or "suppressed sending" in message else Refusal.SOFT
        case "mailgun":  # only permanent failures are BOUNCED (temporary ones are DEFERRED)
            return _MAILGUN_PERMANENT_REASONS.get((raw.get("event-data") or {}).get("reason"), Refusal.HARD)
        case _:
            return Refusal.HARD


def event_refusal(esp: str, event) -> str:
    """The Refusal an Anymail tracking event carries (NONE for deliveries, opens, clicks ...)."""
    match event.event_type:
        case EventType.COMPLAINED:
            return Refusal.COMPLAINT
        case EventType.UNSUBSCRIBED:
            return Refusal.UNSUBSCRIBE
        case EventType.DEFERRED:
            return Refusal.SOFT
        case EventType.REJECTED:
            return {
                RejectReason.BOUNCED: Refusal.HARD, RejectReason.INVALID: Refusal.HARD,
                RejectReason.SPAM: Refusal.COMPLAINT, RejectReason.UNSUBSCRIBED: Refusal.UNSUBSCRIBE,
            }.get(event.reject_reason, Refusal.OURS)
        case EventType.BOUNCED:
            permanence = _bounce_permanence(esp, event.esp_event)
            if permanence in (Refusal.HARD, Refusal.SOFT) and _ABOUT_US.search(str(event.mta_response or "")):
                return Refusal.OURS
            return permanence
    return Refusal.NONE
