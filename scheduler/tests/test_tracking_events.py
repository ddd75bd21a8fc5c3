"""Tracking events through the real webhook URL, from stored event to consequence: Postmark's
payloads, in the format Anymail documents and tests (anymail's tests/test_postmark_webhooks.py)."""

import base64
import datetime
import json
import queue
import threading

import pytest
from django.urls import reverse

from scheduler import events
from scheduler.events import SOFT_BOUNCE_LIMIT, ApplyGatherer
from scheduler.ledger import Reason, Status
from scheduler.models import TrackingEvent
from signups.models import Enrollment, Learner, Suppression, email_digest

from scheduler.tests.helpers import BEFORE_START, START, at, learner_in, provider_error, run_pass, weekly
from scheduler.tests.webhook_requests import AUTH, RECIPIENT, SECRET, WEEK_1_PASS

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]

PASS = WEEK_1_PASS


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}



def postmark(record_type: str, row, **fields) -> dict:
    event = {
        "RecordType": record_type, "ServerID": 23, "MessageStream": "broadcast", "MessageID": row.provider_message_id or "not-known",
        "Recipient": RECIPIENT, "Email": RECIPIENT, "Tag": "gentle-python-week-1",
        "Metadata": {"delivery": str(row.pk), "learner": str(row.learner.public_id)},
    }
    stamp = "2026-11-30T10:00:05.1234567Z"
    event.update({"Delivery": {"DeliveredAt": stamp}, "Open": {"ReceivedAt": stamp}, "Click": {"ReceivedAt": stamp}}.get(record_type, {}))
    event.update(fields)
    return event


def post(client, payload, esp="postmark", **headers):
    return client.post(
        reverse(f"{esp}_tracking_webhook"), data=json.dumps(payload), content_type="application/json", **{**AUTH, **headers}
    )


def test_a_delivery_then_an_open_are_recorded_on_the_email_once(client, week_1):
    answer = post(client, postmark("Delivery", week_1))
    assert answer.status_code == 200 and "Content-Security-Policy" not in answer  # a provider reads no page
    assert post(client, postmark("Open", week_1, ReceivedAt="2026-11-30T11:00:00Z")).status_code == 200
    assert post(client, postmark("Open", week_1, ReceivedAt="2026-11-30T11:00:00Z")).status_code == 200  # sent again

    week_1.refresh_from_db()
    assert week_1.delivered_at.isoformat().startswith("2026-11-30T10:00:05")
    assert week_1.opened_at.isoformat().startswith("2026-11-30T11:00:00")
    assert week_1.clicked_at is None
    assert TrackingEvent.objects.count() == 2
    assert set(TrackingEvent.objects.values_list("applied_at", flat=True)) != {None}


def test_a_hard_bounce_stops_all_mail_to_the_address_and_keeps_the_learners_place(client, week_1, zoe):
    bounce = postmark(
        "Bounce", week_1, ID=4323372036854775807, Type="HardBounce", TypeCode=1,
        Description="The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        Details="smtp;550 5.1.1 The email account that you tried to reach does not exist.", BouncedAt="2026-11-30T10:01:00Z",
    )
    assert post(client, bounce).status_code == 200

    learner = Learner.objects.get(pk=zoe.learner_id)
    assert learner.unsubscribed_at is not None and learner.unsubscribed_reason == Suppression.Reason.BOUNCED
    assert Suppression.objects.get(email_digest=email_digest(RECIPIENT)).reason == Suppression.Reason.BOUNCED
    assert Enrollment.objects.get(pk=zoe.pk).status == Enrollment.Status.ACTIVE  # their place is kept
    week_1.refresh_from_db()
    assert week_1.bounced_at is not None


def test_a_bounce_about_our_policy_touches_nobody(client, week_1, zoe):
    bounce = postmark(
        "Bounce", week_1, ID=77, Type="HardBounce", TypeCode=1, Description="Blocked",
        Details="smtp;550 5.7.1 Message rejected due to the sender's IP reputation", BouncedAt="2026-11-30T10:01:00Z",
    )
    assert post(client, bounce).status_code == 200

    assert Learner.objects.get(pk=zoe.learner_id).unsubscribed_at is None
    assert not Suppression.objects.exists()
    assert TrackingEvent.objects.get().refusal == TrackingEvent.Refusal.OURS


def test_a_complaint_ends_the_enrollment_for_good(client, week_1, zoe):
    complaint = postmark("SpamComplaint", week_1, ID=42, Type="SpamComplaint", TypeCode=512, BouncedAt="2026-11-30T12:00:00Z")
    assert post(client, complaint).status_code == 200

    learner = Learner.objects.get(pk=zoe.learner_id)
    assert learner.unsubscribed_reason == Suppression.Reason.COMPLAINED
    assert Enrollment.objects.get(pk=zoe.pk).status == Enrollment.Status.LEFT
    # A hard bounce arriving later does not weaken it to something an organizer could lift.
    post(client, postmark("Bounce", week_1, ID=43, Type="HardBounce", TypeCode=1, BouncedAt="2026-11-30T12:05:00Z"))
    assert Learner.objects.get(pk=zoe.learner_id).unsubscribed_reason == Suppression.Reason.COMPLAINED


def _soft_bounce(row, event_id, moment):
    return postmark("Bounce", row, ID=event_id, Type="SoftBounce", TypeCode=4096, BouncedAt=moment, Details="mailbox full")


def test_soft_bounces_stop_mail_after_several_emails_in_a_row_not_retries_of_one(client, week_1, zoe, cohort, clock):
    for attempt in range(SOFT_BOUNCE_LIMIT + 1):  # the provider retrying one email: counts once
        post(client, _soft_bounce(week_1, 100 + attempt, f"2026-11-30T1{attempt}:00:00Z"))
    assert Learner.objects.get(pk=zoe.learner_id).unsubscribed_at is None

    rows = [week_1]
    for week in range(2, SOFT_BOUNCE_LIMIT + 1):
        moment = at(START + (week - 1) * (START - START.replace(day=23)), 10)
        clock.move_to(moment)
        run_pass(moment)
        rows.append(weekly(cohort, week).get())
    for number, row in enumerate(rows[1:], start=2):
        post(client, _soft_bounce(row, 200 + number, f"2026-12-{number * 7 - 7:02d}T11:00:00Z"))
    learner = Learner.objects.get(pk=zoe.learner_id)
    assert learner.unsubscribed_reason == Suppression.Reason.SOFT_BOUNCED


def test_a_delivery_between_soft_bounces_starts_the_count_again(client, week_1, zoe):
    post(client, _soft_bounce(week_1, 1, "2026-11-30T10:00:00Z"))
    post(client, postmark("Delivery", week_1, DeliveredAt="2026-11-30T12:00:00Z"))
    from scheduler.events import soft_bounces_in_a_row

    assert soft_bounces_in_a_row([zoe.learner_id]) == {zoe.learner_id: 0}


def test_an_ambiguous_row_the_provider_reports_delivered_is_sent(client, zoe, cohort, provider, clock):
    provider[RECIPIENT] = [provider_error(502, "Bad Gateway")]
    clock.move_to(PASS)
    run_pass(PASS)
    row = weekly(cohort, 1).get()
    assert (row.status, row.reason_code) == (Status.FAILED, Reason.AMBIGUOUS)
    other = learner_in(cohort, email="other@example.org")

    assert post(client, postmark("Delivery", row, MessageID="")).status_code == 200

    row.refresh_from_db()
    assert (row.status, row.reason_code) == (Status.SENT, Reason.PROVIDER_CONFIRMED)
    assert row.sent_at is not None and row.delivered_at is not None
    assert other.learner.unsubscribed_at is None


def test_an_event_for_no_email_of_ours_is_kept_as_orphaned(client, week_1):
    stranger = postmark("Delivery", week_1, Metadata={}, MessageID="no-such-message", Recipient="stranger@example.net", Email="stranger@example.net")
    assert post(client, stranger).status_code == 200
    event = TrackingEvent.objects.get()
    assert event.is_orphaned and event.delivery_id is None


def test_metadata_naming_another_learners_delivery_is_not_believed(client, week_1, cohort):
    other = learner_in(cohort, email="other@example.org")
    forged = postmark("Delivery", week_1, MessageID="x", Metadata={"delivery": str(week_1.pk), "learner": str(other.learner.public_id)})
    post(client, forged)
    event = TrackingEvent.objects.get()
    assert event.delivery_id is None and event.learner_id == other.learner_id
    week_1.refresh_from_db()
    assert week_1.delivered_at is None


def test_without_basic_auth_401_and_nothing_stored(client, week_1):
    response = client.post(reverse("postmark_tracking_webhook"), data=json.dumps(postmark("Delivery", week_1)), content_type="application/json")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic")
    wrong = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"tracker:wrong").decode()}
    assert post(client, postmark("Delivery", week_1), **wrong).status_code == 401
    assert not TrackingEvent.objects.exists()


def test_a_malformed_payload_is_400_and_logged(client, week_1, caplog):
    response = client.post(reverse("postmark_tracking_webhook"), data="{not json", content_type="application/json", **AUTH)
    assert response.status_code == 400
    assert "unreadable payload" in caplog.text and "{not json" in caplog.text
    assert post(client, ["a", "list"]).status_code == 400
    assert not TrackingEvent.objects.exists()


def test_organizers_read_the_stored_events_viewers_do_not(client, week_1):
    from mooc.permissions import ORGANIZER, VIEWER
    from mooc.tests.test_staff_roles import log_in

    post(client, postmark("Delivery", week_1))
    row_link = reverse("admin:scheduler_trackingevent_change", args=[TrackingEvent.objects.get().pk])
    organizer = log_in(ORGANIZER)
    listing = organizer.get(reverse("admin:scheduler_trackingevent_changelist"), {"q": RECIPIENT.upper()})
    assert listing.status_code == 200 and row_link in listing.content.decode()
    assert row_link not in organizer.get(reverse("admin:scheduler_trackingevent_changelist"), {"q": "nobody@example.org"}).content.decode()
    assert organizer.get(row_link).status_code == 200
    post(client, postmark("Delivery", week_1, Metadata={}, MessageID="unknown", Email="stranger@example.net"))
    orphan_link = reverse("admin:scheduler_trackingevent_change", args=[TrackingEvent.objects.get(learner=None).pk])
    orphans = organizer.get(reverse("admin:scheduler_trackingevent_changelist"), {"orphaned": "yes"}).content.decode()
    assert orphan_link in orphans and row_link not in orphans
    assert log_in(VIEWER).get(reverse("admin:scheduler_trackingevent_changelist")).status_code == 403


def test_orphaned_events_are_kept_ninety_days_the_others_with_their_email(client, week_1, clock):
    from scheduler.tasks import tracking_events_apply

    post(client, postmark("Delivery", week_1))
    post(client, postmark("Delivery", week_1, Metadata={}, MessageID="unknown", Email="stranger@example.net"))
    clock.shift(datetime.timedelta(days=89))
    tracking_events_apply()
    assert TrackingEvent.objects.count() == 2
    clock.shift(datetime.timedelta(days=2))
    tracking_events_apply()
    assert [event.delivery_id for event in TrackingEvent.objects.all()] == [week_1.pk]


def test_soft_bounces_in_a_row_are_counted_for_many_learners_in_two_queries(cohort, clock, django_assert_num_queries):
    from scheduler.events import soft_bounces_in_a_row

    learners = [learner_in(cohort, email=f"soft{n}@example.org").learner_id for n in range(3)]
    moment = clock.now()
    for number, learner_id in enumerate(learners):
        for email in range(number + 1):  # learner n: n + 1 different emails bounced softly
            TrackingEvent.objects.create(
                esp="postmark", event_key=f"{learner_id}-{email}", event_type="bounced", refusal="soft", message_id=f"m{learner_id}-{email}",
                occurred_at=moment, received_at=moment, learner_id=learner_id,
            )
    TrackingEvent.objects.create(  # delivered since: learner 2's count starts again
        esp="postmark", event_key="later", event_type="delivered", occurred_at=moment + datetime.timedelta(minutes=1),
        received_at=moment, learner_id=learners[2],
    )
    with django_assert_num_queries(2):
        counts = soft_bounces_in_a_row(learners)
    assert counts == {learners[0]: 1, learners[1]: 2, learners[2]: 0}


# --- A web process gathers its requests for the apply task (ApplyGatherer) -------------------
# The gathering thread is real; its pause is a gate the test opens (no test waits on a timer).
WAITED = 5  # seconds at most for the thread, so a broken gatherer fails rather than hangs


def gatherer_with_gate(ask):
    gate = threading.Semaphore(0)
    pauses = []

    def pause(seconds):
        pauses.append(seconds)
        assert gate.acquire(timeout=WAITED), "the test never opened the gate"

    return ApplyGatherer(ask, gather_ms=200, pause=pause), gate, pauses


def test_a_web_process_asks_for_the_apply_once_for_the_requests_of_a_moment():
    asked = queue.Queue()
    gatherer, gate, pauses = gatherer_with_gate(lambda: asked.put("asked"))
    for _ in range(3):
        gatherer.request()
    assert asked.empty()

    gate.release()
    assert asked.get(timeout=WAITED) == "asked"
    gatherer.request()  # after the wait ended: a new wait
    gate.release()
    assert asked.get(timeout=WAITED) == "asked"
    assert asked.empty() and pauses == [0.2, 0.2]


def test_a_request_while_the_task_is_asked_for_asks_again():
    asked = queue.Queue()

    def ask():
        if asked.empty():
            gatherer.request()  # an event committed after the wait ended, while this one asks
        asked.put("asked")

    gatherer, gate, _ = gatherer_with_gate(ask)
    gatherer.request()
    gate.release()
    gate.release()
    assert [asked.get(timeout=WAITED), asked.get(timeout=WAITED)] == ["asked", "asked"]


def test_with_gathering_on_the_webhook_stores_then_asks_once_the_moment_ends(client, week_1, settings, monkeypatch):
    settings.TRACKING_APPLY_GATHER_MS = 200  # the production default
    asked = queue.Queue()
    gatherer, gate, _ = gatherer_with_gate(lambda: asked.put("asked"))
    monkeypatch.setattr(events, "apply_gatherer", gatherer)

    assert post(client, postmark("Delivery", week_1)).status_code == 200
    assert post(client, postmark("Open", week_1)).status_code == 200
    assert asked.empty() and TrackingEvent.objects.filter(applied_at__isnull=True).count() == 2

    gate.release()
    assert asked.get(timeout=WAITED) == "asked"
    assert asked.empty()
    from scheduler.tasks import tracking_events_apply

    tracking_events_apply()  # what the asked-for task does (in this test's transaction)
    week_1.refresh_from_db()
    assert week_1.opened_at is not None and not TrackingEvent.objects.filter(applied_at__isnull=True).exists()
