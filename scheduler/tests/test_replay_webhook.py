"""manage.py replay_webhook: a saved payload through the webhook's own parsing and storing."""

import json

import pytest
from django.core.management import CommandError, call_command

from scheduler.models import Delivery, TrackingEvent
from scheduler.tests.helpers import BEFORE_START
from scheduler.tests.webhook_requests import mailgun_sign, payload, payload_text
from signups.models import Learner, Suppression

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]



def replay(path, *args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("replay_webhook", str(path), *args, stdout=out)
    return out.getvalue().strip()


def state(row, learner_id):
    row_values = Delivery.objects.filter(pk=row.pk).values().get()
    learner = Learner.objects.values("unsubscribed_at", "unsubscribed_reason").get(pk=learner_id)
    return (
        row_values, learner, list(Suppression.objects.values_list("email_digest", "reason")),
        list(TrackingEvent.objects.values_list("pk", "event_key", "applied_at")),
    )


def test_replaying_a_payload_twice_stores_it_once_and_changes_nothing_the_second_time(webhooks, week_1, zoe, tmp_path):
    saved = tmp_path / "mailgun-bounce.json"
    saved.write_text(json.dumps(mailgun_sign(payload("mailgun", "failed_permanent", week_1))))

    assert replay(saved, "--esp", "mailgun") == "1 events: 1 stored, 0 already stored, 0 orphaned"
    after_first = state(week_1, zoe.learner_id)
    assert after_first[0]["bounced_at"] is not None
    assert after_first[1]["unsubscribed_reason"] == Suppression.Reason.BOUNCED
    assert len(after_first[2]) == 1 and len(after_first[3]) == 1

    assert replay(saved, "--esp", "mailgun") == "1 events: 0 stored, 1 already stored, 0 orphaned"
    assert state(week_1, zoe.learner_id) == after_first


def test_authentication_is_not_checked_an_unsigned_sns_message_is_stored(webhooks, week_1, tmp_path):
    data = payload("amazon_ses", "delivery", week_1)
    data["Message"] = json.dumps(data["Message"])  # as SNS sends it; its Signature is a placeholder
    saved = tmp_path / "sns.json"
    saved.write_text(json.dumps(data))

    output = replay(saved, "--esp", "amazon_ses", "--content-type", "text/plain; charset=UTF-8",
                    "--header", "x-amz-sns-message-type=Notification", "--header", f"x-amz-sns-message-id={data['MessageId']}")
    assert output == "1 events: 1 stored, 0 already stored, 0 orphaned"
    week_1.refresh_from_db()
    assert week_1.delivered_at is not None


def test_a_header_carries_resends_event_id(webhooks, week_1, tmp_path):
    saved = tmp_path / "resend.json"
    saved.write_text(payload_text("resend", "delivered", week_1))
    assert replay(saved, "--esp", "resend", "--header", "svix-id=msg_replayed") == "1 events: 1 stored, 0 already stored, 0 orphaned"
    assert TrackingEvent.objects.get().event_key.startswith("msg_replayed|")


def test_events_for_no_email_of_ours_are_counted_as_orphaned(webhooks, tmp_path):
    saved = tmp_path / "stranger.json"
    saved.write_text(payload_text("sendgrid", "delivered", recipient="stranger@example.net"))
    assert replay(saved, "--esp", "sendgrid") == "1 events: 1 stored, 0 already stored, 1 orphaned"


def test_an_unknown_esp_is_an_error_naming_the_known_ones(tmp_path):
    saved = tmp_path / "x.json"
    saved.write_text("{}")
    with pytest.raises(CommandError) as error:
        replay(saved, "--esp", "mandrill")
    assert "mandrill" in str(error.value)
    for esp in ("amazon_ses", "brevo", "mailgun", "mailjet", "postmark", "resend", "sendgrid", "sparkpost"):
        assert esp in str(error.value)


@pytest.mark.parametrize("name", ["missing.json", "."])
def test_a_file_that_cannot_be_read_is_an_error_not_a_traceback(webhooks, tmp_path, name):
    with pytest.raises(CommandError, match="Cannot read"):
        replay(tmp_path / name if name != "." else tmp_path, "--esp", "postmark")
    assert not TrackingEvent.objects.exists()


def test_a_payload_that_is_not_the_providers_is_an_error_and_stores_nothing(webhooks, tmp_path):
    saved = tmp_path / "garbage.json"
    saved.write_bytes(b"{not json")
    with pytest.raises(CommandError, match="not a postmark tracking payload"):
        replay(saved, "--esp", "postmark")
    assert not TrackingEvent.objects.exists()


def test_a_header_without_a_value_is_an_error(webhooks, tmp_path):
    saved = tmp_path / "x.json"
    saved.write_text(payload_text("postmark", "delivery"))
    with pytest.raises(CommandError, match="NAME=VALUE"):
        replay(saved, "--esp", "postmark", "--header", "svix-id")
