"""Simulated tracking events for the development outbox (scheduler/simulation.py): the week-1 emails
of a small cohort go to a real outbox folder, then `simulate_events` makes up and posts their events."""

import datetime
import re
from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.urls import reverse

from mooc.permissions import ORGANIZER
from scheduler.models import Delivery, TrackingEvent
from scheduler.outbox import OUTBOX_BACKEND, outbox_delivery_ids, outbox_dir
from scheduler.simulation import Rates, email_events
from signups.models import Learner, Suppression

from scheduler.tests.helpers import BEFORE_START, START, at, learner_in, run_pass, weekly

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]

PASS = at(START, 10)
LEARNERS = 30
# Shares high enough that 30 emails show every kind of event.
BUSY = ["--opened", "0.5", "--clicked", "0.2", "--bounced", "0.2", "--hard", "0.5"]


@pytest.fixture
def outbox(settings, tmp_path, cohort):
    settings.EMAIL_BACKEND = OUTBOX_BACKEND
    settings.EMAIL_OUTBOX_DIR = tmp_path / "outbox"
    settings.EMAIL_SEND_RATE_PER_SECOND = 0
    return tmp_path / "outbox"


@pytest.fixture
def week_1_sent(outbox, cohort, clock):
    for number in range(LEARNERS):
        learner_in(cohort, email=f"learner{number}@example.org")
    clock.move_to(PASS)
    run_pass(PASS)
    assert weekly(cohort, 1).filter(status=Delivery.Status.SENT).count() == LEARNERS
    clock.move_to(PASS + datetime.timedelta(days=1))  # every event has happened
    return weekly(cohort, 1)


def simulate(*options) -> str:
    output = StringIO()
    call_command("simulate_events", *options, stdout=output)
    return output.getvalue()


def events_seen() -> set[tuple]:
    return set(TrackingEvent.objects.values_list("event_key", "event_type", "refusal", "occurred_at", "delivery_id"))


def test_the_outbox_files_name_their_ledger_rows(week_1_sent):
    assert outbox_delivery_ids() >= set(week_1_sent.values_list("pk", flat=True))


def test_every_email_is_delivered_or_bounced_and_some_opened_and_clicked(week_1_sent, cohort):
    output = simulate("--cohort", cohort.slug, "--seed", "7", *BUSY)

    rows = list(week_1_sent.select_related("learner"))
    bounced = [row for row in rows if row.bounced_at]
    assert all((row.delivered_at is None) == (row in bounced) for row in rows)  # delivered, or else bounced
    opened = [row for row in rows if row.opened_at]
    clicked = [row for row in rows if row.clicked_at]
    assert bounced and opened and clicked
    assert all(row.opened_at and row.opened_at <= row.clicked_at for row in clicked)  # a click is also an open, after it
    assert all(row.delivered_at <= row.opened_at for row in opened)
    assert all(row.sent_at < row.delivered_at for row in rows if row.delivered_at)
    events = TrackingEvent.objects.all()
    assert set(events.values_list("esp", flat=True)) == {"postmark"}
    assert not events.filter(applied_at__isnull=True).exists() and not events.filter(delivery__isnull=True).exists()
    assert events.count() == len(rows) + len(opened) + len(clicked)  # one delivery or bounce each, plus opens and clicks
    assert f"events posted to /anymail/postmark/tracking/: {events.count()}, new: {events.count()}" in output

    hard = {event.delivery.learner_id for event in events.filter(refusal=TrackingEvent.Refusal.HARD).select_related("delivery")}
    soft = {event.delivery.learner_id for event in events.filter(refusal=TrackingEvent.Refusal.SOFT).select_related("delivery")}
    assert hard and soft
    assert set(Learner.objects.filter(unsubscribed_reason=Suppression.Reason.BOUNCED).values_list("pk", flat=True)) == hard
    # One soft bounce is not enough to stop anyone's mail.
    assert not Learner.objects.filter(pk__in=soft, unsubscribed_at__isnull=False).exists()


def test_the_same_seed_makes_the_same_events_and_another_seed_others(week_1_sent, cohort):
    simulate("--seed", "7", *BUSY)
    first = events_seen()
    TrackingEvent.objects.all().delete()
    simulate("--seed", "7", *BUSY)
    assert events_seen() == first
    TrackingEvent.objects.all().delete()
    simulate("--seed", "8", *BUSY)
    assert events_seen() != first


def test_running_again_doubles_nothing(week_1_sent):
    simulate("--seed", "3", *BUSY)
    events = events_seen()
    rows = list(week_1_sent.order_by("pk").values_list("delivered_at", "opened_at", "clicked_at", "bounced_at"))
    suppressions = list(Suppression.objects.values_list("email_digest", "reason"))

    output = simulate("--seed", "3", *BUSY)

    assert "new: 0" in output
    assert events_seen() == events
    assert list(week_1_sent.order_by("pk").values_list("delivered_at", "opened_at", "clicked_at", "bounced_at")) == rows
    assert list(Suppression.objects.values_list("email_digest", "reason")) == suppressions


def test_only_emails_the_outbox_received_and_only_what_has_happened(week_1_sent, outbox, clock):
    missing = week_1_sent.order_by("pk").first()
    for path in outbox.iterdir():
        if re.search(rf"^X-Mooc-Delivery: .*; id={missing.pk}$", path.read_text(), re.MULTILINE):
            path.unlink()
    clock.move_to(PASS + datetime.timedelta(seconds=31))  # every email delivered or bounced, nothing opened yet

    output = simulate("--seed", "5", "--opened", "0.9", "--clicked", "0.5", "--bounced", "0")

    assert not TrackingEvent.objects.filter(delivery=missing).exists()
    assert TrackingEvent.objects.filter(event_type="delivered").count() == LEARNERS - 1
    assert not TrackingEvent.objects.filter(event_type__in=["opened", "clicked"]).exists()
    assert "Still to come:" in output

    clock.move_to(PASS + datetime.timedelta(hours=2))
    simulate("--seed", "5", "--opened", "0.9", "--clicked", "0.5", "--bounced", "0")
    assert TrackingEvent.objects.filter(event_type="opened").exists()
    assert TrackingEvent.objects.filter(event_type="delivered").count() == LEARNERS - 1


def test_events_go_through_the_webhooks_basic_auth(week_1_sent, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "tracker:secret"}
    simulate("--seed", "2")
    assert TrackingEvent.objects.filter(event_type="delivered").exists()


def test_refused_unless_the_site_sends_to_the_outbox(week_1_sent, settings):
    settings.EMAIL_BACKEND = "mooc.testing.providers.ScriptedAnymailBackend"
    with pytest.raises(CommandError, match="not the development outbox"):
        simulate()
    assert not TrackingEvent.objects.exists()


def test_shares_that_do_not_add_up_are_refused(week_1_sent):
    with pytest.raises(CommandError, match="clicked <= opened"):
        simulate("--opened", "0.2", "--clicked", "0.5")
    with pytest.raises(CommandError, match="No cohort"):
        simulate("--cohort", "no-such-round")
    assert not TrackingEvent.objects.exists()


def test_payloads_are_postmarks_with_our_metadata(week_1_sent):
    row = week_1_sent.select_related("learner", "cohort__course").first()
    payloads = [payload for _, payload in email_events(row, Rates(opened=1, clicked=1, bounced=0), seed=1)]
    assert [payload["RecordType"] for payload in payloads] == ["Delivery", "Open", "Click"]
    assert all(payload["Metadata"] == {"delivery": str(row.pk), "learner": str(row.learner.public_id)} for payload in payloads)
    assert payloads[0]["Recipient"] == row.learner.email and payloads[0]["Tag"] == "gentle-python-week-1"


# --- The cohort admin's action -----------------------------------------------------------------


def _changelist_actions(client) -> str:
    return client.get(reverse("admin:cohorts_cohort_changelist")).content.decode()


def test_the_action_queues_the_simulation_for_a_superuser(admin_client, week_1_sent, cohort):
    assert "Simulate tracking events" in _changelist_actions(admin_client)
    response = admin_client.post(
        reverse("admin:cohorts_cohort_changelist"), {"action": "simulate_events", ACTION_CHECKBOX_NAME: [cohort.pk]}, follow=True
    )
    assert "A worker is making up the tracking events" in response.content.decode()
    # The suite runs tasks at once: the worker's part is done.
    assert TrackingEvent.objects.filter(event_type="delivered").exists()


def test_the_action_is_refused_when_the_site_sends_through_a_provider(admin_client, week_1_sent, cohort, settings):
    settings.EMAIL_BACKEND = "mooc.testing.providers.ScriptedAnymailBackend"
    response = admin_client.post(
        reverse("admin:cohorts_cohort_changelist"), {"action": "simulate_events", ACTION_CHECKBOX_NAME: [cohort.pk]}, follow=True
    )
    assert "Not simulated" in response.content.decode()
    assert not TrackingEvent.objects.exists()


def test_organizers_are_not_offered_the_action(client, week_1_sent, cohort):
    organizer = User.objects.create_user("olga", password="pw-for-tests-only", is_staff=True)
    organizer.groups.add(Group.objects.get(name=ORGANIZER))
    client.force_login(organizer)
    assert "Simulate tracking events" not in _changelist_actions(client)
    assert "Pause sending" in _changelist_actions(client)  # the page shows the organizer's own actions

    response = client.post(
        reverse("admin:cohorts_cohort_changelist"), {"action": "simulate_events", ACTION_CHECKBOX_NAME: [cohort.pk]}, follow=True
    )
    assert response.status_code == 200
    assert not TrackingEvent.objects.exists()
    assert outbox_dir().is_dir()
