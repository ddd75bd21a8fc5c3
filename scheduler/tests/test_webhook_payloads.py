"""Every provider's tracking webhook, through its real URL, with its real payloads
(webhook_payloads/, the shapes Anymail documents and tests) signed as the provider signs them:
what each event does to the email's row, the suppression list and the learner, and what a
request that is not the provider's leaves behind (nothing)."""

import json

import pytest
from django.urls import reverse

from scheduler.ledger import Reason, Status
from scheduler.models import TrackingEvent
from scheduler.tests.helpers import BEFORE_START, provider_error, run_pass, weekly
from scheduler.tests.webhook_requests import (
    AUTH, RECIPIENT, WEEK_1_PASS, WRONG_AUTH, SendGridSigner, mailgun_sign, payload, resend_headers,
)
from signups.models import Enrollment, Learner, Suppression, email_digest

pytestmark = [pytest.mark.django_db, pytest.mark.clock(BEFORE_START)]

PASS = WEEK_1_PASS
ESPS = ["mailgun", "amazon_ses", "postmark", "sendgrid", "brevo", "mailjet", "resend", "sparkpost"]
SIGNED = ["mailgun", "amazon_ses", "sendgrid", "resend"]
DELIVERED = {
    "mailgun": "delivered", "amazon_ses": "delivery", "postmark": "delivery", "sendgrid": "delivered",
    "brevo": "delivered", "mailjet": "sent", "resend": "delivered", "sparkpost": "delivery",
}
HARD_BOUNCE = {
    "mailgun": "failed_permanent", "amazon_ses": "bounce_permanent", "postmark": "bounce_hard", "sendgrid": "bounce",
    "brevo": "hard_bounce", "mailjet": "bounce_hard", "resend": "bounced", "sparkpost": "bounce",
}



def learner_of(enrollment):
    return Learner.objects.get(pk=enrollment.learner_id)


def nothing_stored():
    return not TrackingEvent.objects.exists() and not Suppression.objects.exists()


# --- Every provider ----------------------------------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_a_delivery_is_recorded_on_the_email_once(webhooks, week_1, zoe, esp):
    assert webhooks.send(esp, DELIVERED[esp], week_1).status_code == 200
    assert webhooks.send(esp, DELIVERED[esp], week_1).status_code == 200  # the provider sending it again

    week_1.refresh_from_db()
    assert week_1.delivered_at.isoformat().startswith("2026-11-30T10:00:05")
    assert week_1.bounced_at is None
    event = TrackingEvent.objects.get()
    assert (event.esp, event.event_type, event.delivery_id, event.learner_id) == (esp, "delivered", week_1.pk, zoe.learner_id)
    assert event.applied_at is not None
    assert learner_of(zoe).unsubscribed_at is None and not Suppression.objects.exists()


@pytest.mark.parametrize("esp", ESPS)
def test_a_hard_bounce_suppresses_the_address_and_stops_the_learners_mail(webhooks, week_1, zoe, esp):
    assert webhooks.send(esp, HARD_BOUNCE[esp], week_1).status_code == 200

    week_1.refresh_from_db()
    assert week_1.bounced_at.isoformat().startswith("2026-11-30T10:01:00")
    assert TrackingEvent.objects.get().refusal == TrackingEvent.Refusal.HARD
    assert Suppression.objects.get(email_digest=email_digest(RECIPIENT)).reason == Suppression.Reason.BOUNCED
    learner = learner_of(zoe)
    assert learner.unsubscribed_at is not None and learner.unsubscribed_reason == Suppression.Reason.BOUNCED
    assert Enrollment.objects.get(pk=zoe.pk).status == Enrollment.Status.ACTIVE  # the place is kept, to fix the address


@pytest.mark.parametrize("esp", ESPS)
def test_an_ambiguous_email_the_provider_reports_delivered_is_sent(webhooks, zoe, cohort, provider, clock, esp):
    provider[RECIPIENT] = [provider_error(502, "Bad Gateway")]  # the provider may or may not have taken it
    clock.move_to(PASS)
    run_pass(PASS)
    row = weekly(cohort, 1).get()
    assert (row.status, row.reason_code) == (Status.FAILED, Reason.AMBIGUOUS)
    assert not row.provider_message_id  # so the event finds it by its metadata

    assert webhooks.send(esp, DELIVERED[esp], row).status_code == 200

    row.refresh_from_db()
    assert (row.status, row.reason_code) == (Status.SENT, Reason.PROVIDER_CONFIRMED)
    assert row.delivered_at is not None


@pytest.mark.parametrize("esp", ESPS)
def test_without_basic_auth_401_and_nothing_stored(webhooks, week_1, esp):
    response = webhooks.send(esp, HARD_BOUNCE[esp], week_1, auth=None)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic")
    assert webhooks.send(esp, HARD_BOUNCE[esp], week_1, auth=WRONG_AUTH).status_code == 401
    assert nothing_stored()


def _malformed(esp: str, row):
    """A request the provider signed (where it signs) whose payload cannot be read."""
    if esp == "mailgun":
        return {"event-data": ["not", "an", "event"], "signature": {"token": "{{token}}"}}
    if esp == "amazon_ses":
        return {**payload(esp, "delivery", row), "Message": "{not json"}
    return b"{not json"


@pytest.mark.parametrize("esp", ESPS)
def test_a_malformed_payload_is_400_and_nothing_stored(webhooks, week_1, esp, caplog):
    response = webhooks.post(esp, _malformed(esp, week_1))
    assert response.status_code == 400
    assert "unreadable payload" in caplog.text
    assert nothing_stored()


def _wrongly_signed(webhooks, esp: str, row):
    """(data, extra headers) for the hard bounce, signed by someone without the provider's key."""
    data = payload(esp, HARD_BOUNCE[esp], row)
    if esp == "mailgun":
        return mailgun_sign(data, key="not-the-signing-key"), {}
    if esp == "amazon_ses":
        signed = webhooks.sns.sign({**data, "Message": json.dumps(payload(esp, DELIVERED[esp], row)["Message"])})
        return {**signed, "Message": json.dumps(data["Message"])}, {}  # (the SNS headers are the request's own)
    body = json.dumps(data).encode()
    if esp == "sendgrid":
        return body, SendGridSigner().headers(body)
    return body, resend_headers(body, "msg_forged", secret="whsec_" + "b3RoZXItc2VjcmV0")  # base64 of "other-secret"


@pytest.mark.parametrize("esp", SIGNED)
def test_a_wrong_signature_is_403_and_nothing_stored(webhooks, week_1, esp):
    data, headers = _wrongly_signed(webhooks, esp, week_1)
    response = webhooks.post(esp, data, sign=False, headers=headers)
    assert response.status_code == 403
    assert nothing_stored()


@pytest.mark.parametrize("esp", SIGNED)
def test_a_missing_signature_is_403_even_with_basic_auth(webhooks, week_1, esp):
    data = payload(esp, HARD_BOUNCE[esp], week_1)
    if esp == "mailgun":
        del data["signature"]
    if esp == "amazon_ses":
        del data["Signature"]
    assert webhooks.post(esp, data, sign=False).status_code == 403
    assert nothing_stored()
    assert len(webhooks.http.calls) == 0  # refused before any certificate was fetched


# --- Mailgun -------------------------------------------------------------------------------------


def test_mailgun_an_open_and_a_click_are_recorded(webhooks, week_1):
    assert webhooks.send("mailgun", "opened", week_1).status_code == 200
    assert webhooks.send("mailgun", "clicked", week_1).status_code == 200
    week_1.refresh_from_db()
    assert week_1.opened_at.isoformat().startswith("2026-11-30T11:00:00")
    assert week_1.clicked_at.isoformat().startswith("2026-11-30T11:05:00")
    assert week_1.delivered_at is not None  # an open implies a delivery
    assert TrackingEvent.objects.count() == 2


def test_mailgun_a_temporary_failure_is_soft_and_suppresses_nobody(webhooks, week_1, zoe):
    assert webhooks.send("mailgun", "failed_temporary", week_1).status_code == 200
    event = TrackingEvent.objects.get()
    assert (event.event_type, event.refusal) == ("deferred", TrackingEvent.Refusal.SOFT)
    assert learner_of(zoe).unsubscribed_at is None and not Suppression.objects.exists()


def test_mailgun_a_complaint_ends_the_enrollment(webhooks, week_1, zoe):
    assert webhooks.send("mailgun", "complained", week_1).status_code == 200
    assert learner_of(zoe).unsubscribed_reason == Suppression.Reason.COMPLAINED
    assert Suppression.objects.get().reason == Suppression.Reason.COMPLAINED
    assert Enrollment.objects.get(pk=zoe.pk).status == Enrollment.Status.LEFT


def test_mailgun_the_same_event_signed_again_is_stored_once(webhooks, week_1):
    """Mailgun's retry carries the same token (our event id): stored once."""
    data = payload("mailgun", "delivered", week_1)
    assert webhooks.post("mailgun", data).status_code == 200
    assert webhooks.post("mailgun", data).status_code == 200
    assert TrackingEvent.objects.count() == 1


# --- Amazon SES through SNS ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_a_delivery_open_and_click_signed_in_either_version_are_recorded(webhooks, week_1, version):
    for name in ("delivery", "open", "click"):
        assert webhooks.send("amazon_ses", name, week_1, sns_version=version).status_code == 200
    week_1.refresh_from_db()
    assert week_1.delivered_at.isoformat().startswith("2026-11-30T10:00:05")
    assert week_1.opened_at.isoformat().startswith("2026-11-30T11:00:00")
    assert week_1.clicked_at.isoformat().startswith("2026-11-30T11:05:00")


def test_ses_a_transient_bounce_is_soft(webhooks, week_1, zoe):
    assert webhooks.send("amazon_ses", "bounce_transient", week_1).status_code == 200
    event = TrackingEvent.objects.get()
    assert (event.event_type, event.refusal) == ("bounced", TrackingEvent.Refusal.SOFT)
    week_1.refresh_from_db()
    assert week_1.bounced_at is not None
    assert learner_of(zoe).unsubscribed_at is None and not Suppression.objects.exists()


def test_ses_a_complaint_ends_the_enrollment(webhooks, week_1, zoe):
    assert webhooks.send("amazon_ses", "complaint", week_1).status_code == 200
    assert learner_of(zoe).unsubscribed_reason == Suppression.Reason.COMPLAINED
    assert Enrollment.objects.get(pk=zoe.pk).status == Enrollment.Status.LEFT


def test_ses_an_event_without_headers_finds_its_email_by_message_id(webhooks, week_1):
    data = payload("amazon_ses", "delivery", week_1)
    del data["Message"]["mail"]["headers"]  # "Include original headers" off in the configuration set
    assert week_1.provider_message_id
    assert webhooks.post("amazon_ses", data).status_code == 200
    assert TrackingEvent.objects.get().delivery_id == week_1.pk


def test_ses_the_topic_confirmed_notice_stores_nothing(webhooks):
    notice = {**payload("amazon_ses", "delivery"), "Message": "Successfully validated SNS topic for Amazon SES event publishing."}
    assert webhooks.post("amazon_ses", notice).status_code == 200
    assert not TrackingEvent.objects.exists()


# --- Postmark ------------------------------------------------------------------------------------


def test_postmark_an_unsubscribe_at_postmark_unsubscribes_the_learner(webhooks, week_1, zoe):
    assert webhooks.send("postmark", "subscription_change_unsubscribe", week_1).status_code == 200
    event = TrackingEvent.objects.get()
    assert (event.event_type, event.refusal) == ("unsubscribed", TrackingEvent.Refusal.UNSUBSCRIBE)
    learner = learner_of(zoe)
    assert learner.unsubscribed_reason == Suppression.Reason.UNSUBSCRIBED
    assert Suppression.objects.get().reason == Suppression.Reason.UNSUBSCRIBED


def test_postmark_a_suppression_for_a_hard_bounce_is_a_hard_bounce(webhooks, week_1, zoe):
    assert webhooks.send("postmark", "subscription_change_hard_bounce", week_1).status_code == 200
    assert learner_of(zoe).unsubscribed_reason == Suppression.Reason.BOUNCED


def test_postmark_a_click_records_the_click_and_the_open(webhooks, week_1):
    assert webhooks.send("postmark", "click", week_1).status_code == 200
    week_1.refresh_from_db()
    assert week_1.clicked_at.isoformat().startswith("2026-11-30T11:05:00")
    assert week_1.opened_at is not None and week_1.delivered_at is not None


# --- Signatures the providers make -----------------------------------------------------------------


def test_sendgrid_a_signed_webhook_without_basic_auth_is_accepted_by_its_signature(webhooks, settings, week_1):
    settings.ANYMAIL = {key: value for key, value in settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"}
    assert webhooks.send("sendgrid", "delivered", week_1, auth=None).status_code == 200
    assert TrackingEvent.objects.get().delivery_id == week_1.pk


def test_resend_the_svix_id_is_the_event_id_so_a_redelivery_is_stored_once(webhooks, week_1):
    for _ in range(2):  # svix sends again with the same svix-id and a new timestamp and signature
        assert webhooks.send("resend", "delivered", week_1, svix_id="msg_2Yp5ZkTz").status_code == 200
    assert TrackingEvent.objects.get().event_key.startswith("msg_2Yp5ZkTz|")


def test_resend_a_stale_svix_timestamp_is_refused(webhooks, week_1, clock):
    import datetime

    body, content_type, headers = webhooks.request("resend", payload("resend", "delivered", week_1))
    clock.shift(datetime.timedelta(hours=1))  # svix accepts five minutes either way
    response = webhooks.client.post(reverse("resend_tracking_webhook"), data=body, content_type=content_type, **AUTH, **headers)
    assert response.status_code == 403
    assert not TrackingEvent.objects.exists()
