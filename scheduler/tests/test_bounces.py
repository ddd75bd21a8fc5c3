"""scheduler/bounces.py against each provider's real payloads (webhook_payloads/, in the shapes
Anymail documents and tests), parsed by our own views as a request would be: hard, soft, ours,
complaint, unsubscribe, or nothing about the address."""

import pytest
from django.test import RequestFactory

from scheduler.bounces import event_refusal
from scheduler.models import TrackingEvent
from scheduler.tests.webhook_requests import payload
from scheduler.webhooks import TRACKING_VIEWS

Refusal = TrackingEvent.Refusal


def refusals(webhooks, esp: str, data) -> list[str]:
    body, content_type, headers = webhooks.request(esp, data, sign=False)
    request = RequestFactory().post(f"/anymail/{esp}/tracking/", data=body, content_type=content_type, **headers)
    return [event_refusal(esp, event) for event in TRACKING_VIEWS[esp]().events_parse(request)]


def changed(path: str, value):
    """A change to the payload: set the value at a dotted path (list items by number)."""
    def change(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return data
    return change


CASES = [
    # Mailgun: the failure's severity, then its reason
    ("mailgun", "delivered", None, Refusal.NONE),
    ("mailgun", "opened", None, Refusal.NONE),
    ("mailgun", "clicked", None, Refusal.NONE),
    ("mailgun", "failed_permanent", None, Refusal.HARD),
    ("mailgun", "failed_temporary", None, Refusal.SOFT),
    ("mailgun", "complained", None, Refusal.COMPLAINT),
    ("mailgun", "unsubscribed", None, Refusal.UNSUBSCRIBE),
    ("mailgun", "failed_permanent", changed("event-data.reason", "suppress-bounce"), Refusal.HARD),
    ("mailgun", "failed_permanent", changed("event-data.reason", "suppress-complaint"), Refusal.COMPLAINT),
    ("mailgun", "failed_permanent", changed("event-data.reason", "suppress-unsubscribe"), Refusal.UNSUBSCRIBE),
    ("mailgun", "failed_permanent", changed("event-data.reason", "old"), Refusal.SOFT),
    ("mailgun", "failed_permanent", changed("event-data.reason", "espblock"), Refusal.OURS),
    ("mailgun", "failed_permanent", changed("event-data.delivery-status.message", "5.7.1 Rejected by policy"), Refusal.OURS),
    # Amazon SES: bounceType
    ("amazon_ses", "delivery", None, Refusal.NONE),
    ("amazon_ses", "open", None, Refusal.NONE),
    ("amazon_ses", "click", None, Refusal.NONE),
    ("amazon_ses", "bounce_permanent", None, Refusal.HARD),
    ("amazon_ses", "bounce_transient", None, Refusal.SOFT),
    ("amazon_ses", "complaint", None, Refusal.COMPLAINT),
    ("amazon_ses", "bounce_permanent", changed("Message.bounce.bounceType", "Undetermined"), Refusal.SOFT),
    ("amazon_ses", "bounce_permanent", changed("Message.bounce.bounceSubType", "OnAccountSuppressionList"), Refusal.HARD),
    ("amazon_ses", "bounce_permanent",
     changed("Message.bounce.bouncedRecipients.0.diagnosticCode", "smtp; 550 5.7.1 Message rejected as spam"), Refusal.OURS),
    # Postmark: the bounce's Type, a SubscriptionChange's SuppressionReason
    ("postmark", "delivery", None, Refusal.NONE),
    ("postmark", "open", None, Refusal.NONE),
    ("postmark", "click", None, Refusal.NONE),
    ("postmark", "bounce_hard", None, Refusal.HARD),
    ("postmark", "bounce_hard", changed("Type", "SoftBounce"), Refusal.SOFT),
    ("postmark", "bounce_hard", changed("Type", "VirusNotification"), Refusal.OURS),
    ("postmark", "bounce_hard", changed("Type", "SpamComplaint"), Refusal.COMPLAINT),
    ("postmark", "subscription_change_unsubscribe", None, Refusal.UNSUBSCRIBE),
    ("postmark", "subscription_change_hard_bounce", None, Refusal.HARD),
    ("postmark", "subscription_change_hard_bounce", changed("SuppressionReason", "SpamComplaint"), Refusal.COMPLAINT),
    # SendGrid: bounce type "bounce" or "blocked"; a drop for an address known to bounce
    ("sendgrid", "delivered", None, Refusal.NONE),
    ("sendgrid", "bounce", None, Refusal.HARD),
    ("sendgrid", "bounce", changed("0.type", "blocked"), Refusal.SOFT),
    ("sendgrid", "bounce", lambda data: [{**data[0], "event": "dropped", "reason": "Bounced Address"}], Refusal.HARD),
    # Brevo: hard_bounce or soft_bounce
    ("brevo", "delivered", None, Refusal.NONE),
    ("brevo", "hard_bounce", None, Refusal.HARD),
    ("brevo", "soft_bounce", None, Refusal.SOFT),
    # Mailjet: hard_bounce true or false; a greylisting is a deferral
    ("mailjet", "sent", None, Refusal.NONE),
    ("mailjet", "bounce_hard", None, Refusal.HARD),
    ("mailjet", "bounce_hard", lambda data: [{**data[0], "hard_bounce": False, "error": "quota exceeded"}], Refusal.SOFT),
    ("mailjet", "bounce_hard", lambda data: [{**data[0], "hard_bounce": False, "error": "greylisted"}], Refusal.SOFT),
    # Resend: bounce.type, else its message
    ("resend", "delivered", None, Refusal.NONE),
    ("resend", "bounced", None, Refusal.HARD),
    ("resend", "bounced", changed("data.bounce.type", "Transient"), Refusal.SOFT),
    ("resend", "bounced", changed("data.bounce.type", "Undetermined"), Refusal.SOFT),
    ("resend", "bounced", lambda data: {**data, "data": {**data["data"], "bounce": {"message": data["data"]["bounce"]["message"]}}},
     Refusal.HARD),
    ("resend", "bounced", changed("data.bounce", {
        "message": "The recipient's email provider sent a bounce message because the recipient's inbox was full."}), Refusal.SOFT),
    # SparkPost: bounce_class
    ("sparkpost", "delivery", None, Refusal.NONE),
    ("sparkpost", "bounce", None, Refusal.HARD),
    ("sparkpost", "bounce", changed("0.msys.message_event.bounce_class", "22"), Refusal.SOFT),
    ("sparkpost", "bounce", changed("0.msys.message_event.bounce_class", "50"), Refusal.OURS),
]


@pytest.mark.parametrize("esp, name, change, expected", CASES, ids=lambda value: value if isinstance(value, str) else "")
def test_each_providers_event_says_what_it_means_about_the_address(webhooks, esp, name, change, expected):
    data = payload(esp, name)
    if change is not None:
        data = change(data)
    assert refusals(webhooks, esp, data) == [expected]
