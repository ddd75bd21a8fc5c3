"""Simulated tracking events, for development: see the dashboard fill without a provider.

With the development outbox (scheduler/outbox.py) no provider reports anything, so nothing
shows what the tracking webhooks do. `manage.py simulate_events` (and the cohort admin's action
"Simulate tracking events", run by a worker) makes up what a provider would report about the
course emails the outbox received: each one delivered, or bounced (softly or hard); some opened;
some of those clicked. It writes them as Postmark's webhook payloads (the JSON Anymail documents
and parses) and posts each one through the Postmark tracking view with the configured basic
auth, so they take the path real events take: the view's checks, Anymail's parsing,
`tracking_events_store`; then it applies them, as the worker would.

- **Only the outbox's emails**: the SENT ledger rows whose ids the outbox's files carry in their
  X-Mooc-Delivery header. Refused (SimulationRefused) unless EMAIL_BACKEND is the outbox: with
  a real provider, made-up bounces would suppress real learners.
- **Deterministic**: an email's fate and its moments are drawn from a generator seeded by
  (seed, its ledger id), as offsets from its sent_at. The same seed gives the same events, with
  the same event keys: a second run stores nothing twice. A new email sent since gets its own
  events; the others keep theirs.
- **Time runs fast, never ahead**: delivered seconds after the send, opened a minute to
  half an hour later, clicked minutes after. A moment still to come (an email sent a minute ago) is left
  for a later run, which then reports it: never an open before it happened.
"""

import base64
import datetime
import json
import random
import uuid
import warnings
from dataclasses import dataclass

from anymail.exceptions import AnymailInsecureWebhookWarning
from django.conf import settings
from django.test import RequestFactory

from scheduler.events import APPLY_BATCH, tracking_events_apply
from scheduler.models import Delivery, TrackingEvent
from scheduler.outbox import OUTBOX_BACKEND, outbox_delivery_ids
from scheduler.tracking import delivery_tag

ESP = "postmark"
POSTMARK_SERVER_ID = 1
# Ids of the made-up events and messages: the same for the same email, whatever the run.
_NAMESPACE = uuid.UUID("6f1d3c52-1c7e-4c1a-9d0e-5b8f3f0e2a11")


class SimulationRefused(Exception):
    """The site does not send to the development outbox: nothing was simulated."""


@dataclass(frozen=True)
class Rates:
    """Shares of the emails sent: opened and clicked count emails (a click implies an open), bounced
    those never delivered; `hard` is the share of the bounces that are hard (the rest soft)."""

    opened: float = 0.6
    clicked: float = 0.25
    bounced: float = 0.02
    hard: float = 0.5

    def check(self) -> None:
        """Raises ValueError unless 0 <= clicked <= opened <= 1 - bounced and 0 <= hard <= 1."""
        if not 0 <= self.bounced <= 1 or not 0 <= self.hard <= 1:
            raise ValueError("bounced and hard are shares between 0 and 1")
        if not 0 <= self.clicked <= self.opened <= 1 - self.bounced:
            raise ValueError("the shares must satisfy 0 <= clicked <= opened <= 1 - bounced (a click is also an open; a bounce is never opened)")


@dataclass
class SimulationReport:
    emails: int = 0  # the outbox's emails simulated
    posted: int = 0  # events posted to the webhook view
    stored: int = 0  # new tracking events (0 on a second run)
    not_yet: int = 0  # events whose moment is still to come: a later run posts them
    refused: int = 0  # posts the view did not answer 200 (logged by the view)
    applied: int = 0


def simulation_allowed() -> bool:
    return settings.EMAIL_BACKEND == OUTBOX_BACKEND


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def email_events(row: Delivery, rates: Rates, seed: int) -> list[tuple[datetime.datetime, dict]]:
    """What a provider would report about one sent email (its learner and cohort's course loaded):
    (moment, Postmark payload) pairs, oldest first. The same for the same row, rates and seed."""
    draw = random.Random(f"{seed}:{row.pk}")
    fate = draw.random()
    common = {
        "ServerID": POSTMARK_SERVER_ID, "MessageStream": "broadcast",
        "MessageID": row.provider_message_id or str(uuid.uuid5(_NAMESPACE, f"message:{row.pk}")),
        "Tag": delivery_tag(row.cohort.course.slug, row.kind, row.week_number),
        "Metadata": {"delivery": str(row.pk), "learner": str(row.learner.public_id)},
    }
    address = row.learner.email
    delivered = row.sent_at + datetime.timedelta(seconds=draw.uniform(1, 30))
    if fate < rates.bounced:
        hard = draw.random() < rates.hard
        bounce = {
            "RecordType": "Bounce", **common, "Email": address, "BouncedAt": _stamp(delivered),
            "ID": uuid.uuid5(_NAMESPACE, f"bounce:{seed}:{row.pk}").int % 2**62,
            "Type": "HardBounce" if hard else "SoftBounce", "TypeCode": 1 if hard else 4096,
            "Name": "Hard bounce" if hard else "Soft bounce", "Inactive": hard, "CanActivate": True,
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found)." if hard
            else "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist. (simulated)" if hard
            else "smtp;452 4.2.2 The email account that you tried to reach is over quota. (simulated)",
        }
        return [(delivered, bounce)]
    events = [(delivered, {"RecordType": "Delivery", **common, "Recipient": address, "DeliveredAt": _stamp(delivered),
                           "Details": "Simulated delivery (development outbox)"})]
    if fate < rates.bounced + rates.opened:
        # A minute at least after it arrived; most within minutes, a few up to half an hour later.
        opened = delivered + datetime.timedelta(seconds=60 + min(draw.expovariate(1 / 300), 1800))
        events.append((opened, {
            "RecordType": "Open", **common, "Recipient": address, "ReceivedAt": _stamp(opened), "FirstOpen": True,
            "Client": {"Name": "Simulated mail client", "Company": "", "Family": ""}, "OS": {"Name": "", "Company": "", "Family": ""},
            "Platform": "Desktop", "UserAgent": "Mozilla/5.0 (simulated)", "Geo": {},
        }))
        if fate < rates.bounced + rates.clicked:
            clicked = opened + datetime.timedelta(seconds=draw.uniform(5, 600))
            events.append((clicked, {
                "RecordType": "Click", **common, "Recipient": address, "ReceivedAt": _stamp(clicked), "ClickLocation": "HTML",
                "OriginalLink": f"{settings.SITE_URL.rstrip('/')}/", "Client": {"Name": "Simulated mail client"},
                "Platform": "Desktop", "UserAgent": "Mozilla/5.0 (simulated)", "Geo": {},
            }))
    return events


def simulated_rows(cohort_ids: list[int] | None = None):
    """The SENT ledger rows the outbox received (of these cohorts), with what email_events reads."""
    rows = Delivery.objects.filter(status=Delivery.Status.SENT, pk__in=outbox_delivery_ids(), learner__email__gt="")
    if cohort_ids is not None:
        rows = rows.filter(cohort_id__in=cohort_ids)
    return rows.select_related("learner", "cohort__course").order_by("pk")


def _authorization() -> dict[str, str]:
    """The basic auth the tracking views expect (ANYMAIL["WEBHOOK_SECRET"]), as a request header."""
    secret = settings.ANYMAIL.get("WEBHOOK_SECRET")
    if isinstance(secret, list | tuple):
        secret = secret[0] if secret else None
    if not secret:
        return {}
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(str(secret).encode()).decode()}


def tracking_events_simulate(
    now: datetime.datetime, cohort_ids: list[int] | None = None, seed: int = 1, rates: Rates = Rates(),
    since: datetime.datetime | None = None,
) -> SimulationReport:
    """Post the made-up tracking events of the outbox's emails (of these cohorts; all when None)
    whose moment has come (after `since`, when a caller posted those up to it already) through
    the Postmark webhook view, then apply every stored event.
    Idempotent for a seed; deterministic. Raises SimulationRefused unless EMAIL_BACKEND is the
    development outbox, ValueError for rates that do not add up (Rates.check)."""
    if not simulation_allowed():
        raise SimulationRefused(f"EMAIL_BACKEND is {settings.EMAIL_BACKEND}, not the development outbox ({OUTBOX_BACKEND})")
    rates.check()
    from scheduler.webhooks import TRACKING_VIEWS  # the web face: only this function needs it

    report = SimulationReport()
    view = TRACKING_VIEWS[ESP].as_view()
    requests = RequestFactory()
    headers = _authorization()
    before = TrackingEvent.objects.filter(esp=ESP).count()
    with warnings.catch_warnings():
        # Development runs without WEBHOOK_SECRET: Anymail warns at every request that the view is open.
        warnings.simplefilter("ignore", AnymailInsecureWebhookWarning)
        for row in list(simulated_rows(cohort_ids)):  # read first: on SQLite a cursor left open would see our writes
            report.emails += 1
            for moment, payload in email_events(row, rates, seed):
                if moment > now:
                    report.not_yet += 1
                    continue
                if since is not None and moment <= since:
                    continue
                request = requests.post(f"/anymail/{ESP}/tracking/", data=json.dumps(payload), content_type="application/json", **headers)
                response = view(request)
                report.posted += 1
                report.refused += response.status_code != 200
    report.stored = TrackingEvent.objects.filter(esp=ESP).count() - before
    while (applied := tracking_events_apply(now).events) > 0:
        report.applied += applied
        if applied < APPLY_BATCH:
            break
    return report
