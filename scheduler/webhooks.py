"""The providers' tracking webhooks, `/anymail/<esp>/tracking/`, through Anymail's own views.

Anymail's views check the request (its WEBHOOK_SECRET basic auth; the ESP's signature where it
has one) and turn the ESP's payload into normalized events; what happens to them is ours
(scheduler/events.py): they are stored, once each, and a worker applies them. What every
answer means to the provider:

| Request                                       | Answer | Why                                                    |
|-----------------------------------------------|--------|--------------------------------------------------------|
| stored (or stored before: sent again)         | 200    | done                                                   |
| an event for no email of ours                 | 200    | stored as orphaned and counted: a 500 would be retried for days |
| no or wrong basic auth                        | 401    | with WWW-Authenticate, which Amazon SNS waits for       |
| a wrong signature (Mailgun, SNS, SendGrid, Resend) | 403 | nothing stored                                        |
| a payload that cannot be read                 | 400    | logged with what it takes to debug; nothing stored     |
| the ESP's webhook not configured here         | 503    | logged as an error: the provider retries until it is   |
| SNS: AWS's signing certificate not fetched now | 503   | with Retry-After; SNS sends the message again (scheduler/sns.py) |
| SNS: a subscription confirmation              | 200    | a worker confirms it (tasks.sns_subscription_confirm); 503 when it cannot be queued |
| our database down                             | 500    | the provider retries later, which is right             |

The checks and answers (CheckedWebhook), Amazon SNS's (SnsVerified) and the URL's wrapper
(webhook_endpoint) are shared with the providers' inbound webhooks (groupmail/webhooks.py).
"""

import logging

from anymail.exceptions import (
    AnymailAPIError, AnymailConfigurationError, AnymailImproperlyInstalled, AnymailWebhookValidationFailure,
)
from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.base import AnymailBasicAuthMixin
from anymail.webhooks.brevo import BrevoTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.mailjet import MailjetTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.resend import ResendTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from anymail.webhooks.sparkpost import SparkPostTrackingWebhookView
from csp.decorators import csp_exempt
from django.http import HttpResponse
from django.urls import path
from django.utils import timezone
from kombu.exceptions import OperationalError

from mooc.queueing import ENQUEUE_RETRY_POLICY
from scheduler import sns
from scheduler.events import tracking_events_store

logger = logging.getLogger(__name__)

BODY_LOGGED = 300  # characters of a payload we could not read, in the log


class Unreadable(Exception):
    """The payload could not be turned into events."""


class Unavailable(Exception):
    """The request cannot be checked or handled now, through no fault of its own: 503, the
    provider sends it again later."""


RETRY_AFTER_SECONDS = 60


class CheckedWebhook:
    """Placed before an Anymail view: the same checks and parsing, then our answers (the module's
    table); what the events become is the subclass's `events_accept`. Shared by the tracking
    views below and groupmail's inbound views (groupmail/webhooks.py)."""

    esp = ""  # our name for the ESP: the URL's and the stored events'
    webhook = "tracking"  # which of the ESP's webhooks, in the log

    def post(self, request, *args, **kwargs):
        try:
            AnymailBasicAuthMixin.validate_request(self, request)
        except AnymailWebhookValidationFailure:
            logger.warning("%s %s webhook: missing or wrong basic auth, from %s", self.esp, self.webhook, request.META.get("REMOTE_ADDR"))
            response = HttpResponse("Basic auth required.\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Basic realm="Anymail WEBHOOK_SECRET"'
            return response
        try:
            events = self.events_read(request)
        except AnymailWebhookValidationFailure as error:
            logger.warning("%s %s webhook: refused, %s", self.esp, self.webhook, error)
            return HttpResponse("Forbidden.\n", status=403, content_type="text/plain")
        except Unavailable as error:
            logger.warning("%s %s webhook: answered 503, %s", self.esp, self.webhook, error)
            response = HttpResponse("Try again later.\n", status=503, content_type="text/plain")
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        except Unreadable as error:
            body = request.body[:BODY_LOGGED].decode("utf-8", "replace")
            logger.warning(
                "%s %s webhook: unreadable payload (%s; Content-Type %r, %d bytes): %r",
                self.esp, self.webhook, error.__cause__ or error, request.content_type, len(request.body), body,
            )
            return HttpResponse("Unreadable payload.\n", status=400, content_type="text/plain")
        return self.events_accept(request, events)

    def events_accept(self, request, events: list) -> HttpResponse:
        """What the checked, parsed events become, and the answer (200 unless it raises)."""
        raise NotImplementedError

    def events_read(self, request) -> list:
        """Check the request, then read its events. Raises AnymailWebhookValidationFailure (a
        wrong signature) or Unreadable. Also what `replay_webhook` calls, without the checks."""
        self.run_validators(request)  # basic auth again (checked above), then the ESP's signature
        return self.events_parse(request)

    def events_parse(self, request) -> list:
        try:
            return list(self.parse_events(request))
        except (AnymailWebhookValidationFailure, Unavailable):
            raise
        except Exception as error:  # noqa: BLE001 - a payload in any shape must answer 400, not 500
            raise Unreadable(type(error).__name__) from error

    def run_validators(self, request):
        try:
            super().run_validators(request)
        except (AnymailWebhookValidationFailure, Unavailable):
            raise
        except Exception as error:  # noqa: BLE001 - a validator that could not read the payload
            raise Unreadable(type(error).__name__) from error


class StoreEvents(CheckedWebhook):
    """Placed before an Anymail tracking view: our store instead of Anymail's signal."""

    def events_accept(self, request, events: list) -> HttpResponse:
        tracking_events_store(self.esp, events, timezone.now())
        return HttpResponse()


class SnsVerified:
    """Placed before an Anymail Amazon SES view (tracking here, inbound in groupmail/webhooks.py),
    for the two things Anymail leaves to us: the SNS signature is verified (scheduler/sns.py),
    and a subscription is confirmed by a worker, not by a call to AWS inside the request."""

    def validate_request(self, request):
        # Anymail calls every validate_request in the MRO (collect_all_methods): its own header
        # checks and basic auth run as well.
        message = self._parse_sns_message(request)
        if not isinstance(message, dict):
            raise AnymailAPIError("the SNS message is not a JSON object")
        try:
            sns.message_verify(message)
        except sns.SignatureRefused as error:
            raise AnymailWebhookValidationFailure(f"SNS signature: {error}") from error
        except sns.CertificateUnavailable as error:
            raise Unavailable(str(error)) from error

    def auto_confirm_sns_subscription(self, sns_message):
        """Anymail's checks (auto-confirm on, WEBHOOK_SECRET set, so basic auth proved the topic
        is meant for us), then the confirmation is queued; raises Unavailable if it cannot be."""
        if not self.auto_confirm_enabled:
            logger.info("SNS subscription to %s not confirmed: AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS is off", sns_message.get("TopicArn"))
            return
        if not self.basic_auth:
            raise AnymailWebhookValidationFailure(
                f"an SNS SubscriptionConfirmation for {sns_message.get('TopicArn')!r}, but no WEBHOOK_SECRET proves it is meant for us"
            )
        from scheduler.tasks import sns_subscription_confirm

        try:
            sns_subscription_confirm.apply_async(args=[sns_message], retry_policy=ENQUEUE_RETRY_POLICY)
        except (OperationalError, OSError) as error:
            raise Unavailable(
                f"the broker is unreachable, SNS subscription to {sns_message.get('TopicArn')} not confirmed "
                f"(confirm it by hand: {sns_message.get('SubscribeURL')}): {error}"
            ) from error
        logger.info("SNS subscription to %s: confirmation queued", sns_message.get("TopicArn"))


# A publish from a web request: one more try after a failure (as scheduler/events.py).


class AmazonSESTracking(SnsVerified, AmazonSESTrackingWebhookView):
    """Anymail's Amazon SES tracking view, SNS-verified."""


def _view(name: str, anymail_view: type) -> type:
    return type(f"{anymail_view.__name__}Storing", (StoreEvents, anymail_view), {"esp": name})


# Every ESP the README names (scheduler/tests/esps.py), by the name in its URL.
TRACKING_VIEWS = {
    "amazon_ses": _view("amazon_ses", AmazonSESTracking),
    "brevo": _view("brevo", BrevoTrackingWebhookView),
    "mailgun": _view("mailgun", MailgunTrackingWebhookView),
    "mailjet": _view("mailjet", MailjetTrackingWebhookView),
    "postmark": _view("postmark", PostmarkTrackingWebhookView),
    "resend": _view("resend", ResendTrackingWebhookView),
    "sendgrid": _view("sendgrid", SendGridTrackingWebhookView),
    "sparkpost": _view("sparkpost", SparkPostTrackingWebhookView),
}


def tracking_view_create(esp: str):
    """An instance of the ESP's view, as a request would get. Raises AnymailConfigurationError
    (or AnymailImproperlyInstalled) when the ESP's webhook settings are missing."""
    return TRACKING_VIEWS[esp]()


def webhook_endpoint(view_class: type):
    """The URL's view for a CheckedWebhook: 503 when the ESP's settings are missing, no CSP."""
    view = view_class.as_view()

    def anymail_webhook(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except (AnymailConfigurationError, AnymailImproperlyInstalled) as error:
            # Raised while the view is made, before the request is read: our settings, not the payload.
            logger.error("%s %s webhook is not configured: %s", view_class.esp, view_class.webhook, error)
            return HttpResponse("This webhook is not configured.\n", status=503, content_type="text/plain")

    anymail_webhook.csrf_exempt = True
    return csp_exempt()(anymail_webhook)  # a provider reads no page: no policy to build at 500 requests a second


urlpatterns = [path(f"{esp}/tracking/", webhook_endpoint(view), name=f"{esp}_tracking_webhook") for esp, view in TRACKING_VIEWS.items()]
