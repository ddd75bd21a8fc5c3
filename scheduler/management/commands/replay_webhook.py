from anymail.exceptions import AnymailConfigurationError, AnymailImproperlyInstalled, AnymailWebhookValidationFailure
from django.core.management.base import BaseCommand, CommandError
from django.test import RequestFactory
from django.utils import timezone

from scheduler.events import tracking_events_apply, tracking_events_orphaned, tracking_events_store
from scheduler.webhooks import TRACKING_VIEWS, Unavailable, Unreadable, tracking_view_create


class Command(BaseCommand):
    help = (
        "Feed a saved tracking webhook payload (the request body a provider sent) through the same "
        "parsing and storing as /anymail/<esp>/tracking/: each event is stored once, so replaying a "
        "payload again changes nothing. Basic auth and the provider's signature are NOT checked: the "
        "operator running this is trusted, so replay only payloads you know came from the provider. "
        "Prints 'N events: M stored, K already stored, O orphaned'."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The saved request body.")
        parser.add_argument("--esp", required=True, help=f"The provider, as in its URL: {', '.join(TRACKING_VIEWS)}.")
        parser.add_argument("--content-type", default="application/json", help="The request's Content-Type. Default: application/json.")
        parser.add_argument(
            "--header", action="append", default=[], metavar="NAME=VALUE",
            help="A request header the payload needs, repeatable: x-amz-sns-message-type=Notification for "
                 "Amazon SNS, svix-id=msg_... for Resend (its event id).",
        )

    def handle(self, *args, file, esp, content_type, header, **options):
        if esp not in TRACKING_VIEWS:
            raise CommandError(f"Unknown ESP {esp!r}: use one of {', '.join(TRACKING_VIEWS)}.")
        try:
            with open(file, "rb") as payload:
                body = payload.read()
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror or error}") from None
        request = RequestFactory().post(f"/anymail/{esp}/tracking/", data=body, content_type=content_type, **_meta(header))
        try:
            view = tracking_view_create(esp)
        except (AnymailConfigurationError, AnymailImproperlyInstalled) as error:
            raise CommandError(f"The {esp} webhook is not configured here: {error}") from None
        try:
            events = view.events_parse(request)
        except Unreadable as error:
            raise CommandError(f"{file} is not a {esp} tracking payload ({error.__cause__ or error}).") from None
        except (Unavailable, AnymailWebhookValidationFailure) as error:  # an SNS subscription confirmation
            raise CommandError(str(error)) from None
        report = tracking_events_store(esp, events, timezone.now())
        # Applied here and now, as a worker would, so that the orphans can be counted.
        while tracking_events_apply(timezone.now()).events:
            pass
        self.stdout.write(
            f"{report.received} events: {report.stored} stored, {report.received - report.stored} already stored, "
            f"{tracking_events_orphaned(esp, report.stored_keys)} orphaned"
        )


def _meta(headers: list[str]) -> dict[str, str]:
    """NAME=VALUE headers as a request's META (HTTP_NAME_IN_CAPITALS)."""
    meta = {}
    for text in headers:
        name, separator, value = text.partition("=")
        if not separator or not name.strip():
            raise CommandError(f"--header {text!r}: write it as NAME=VALUE, e.g. svix-id=msg_123")
        meta["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
    return meta
