"""Amazon SNS: signatures (scheduler/sns.py) and subscription confirmations, alone and through
the Amazon SES tracking webhook. The signing key and certificate are the test's own
(webhook_requests.SnsSigner); no request leaves the process (`responses` refuses any it was
not told about, and counts the ones it answers)."""

import json
import os
from urllib.parse import parse_qs

import pytest
import requests
from django.core.cache import cache
from kombu.exceptions import OperationalError

from scheduler import sns
from scheduler.models import TrackingEvent
from scheduler.tests.esps import _RawAnswer
from scheduler.tests.webhook_requests import AUTH, payload

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"


def notification(**fields) -> dict:
    message = {
        "Type": "Notification", "MessageId": "22cd5a4e-0c3b-5a7c-a0e3-2b1e2f6a7b8c",
        "TopicArn": "arn:aws:sns:us-east-1:888888888888:mooc-ses-events", "Subject": "Amazon SES Email Event Notification",
        "Message": '{"eventType": "Delivery"}\n', "Timestamp": "2026-11-30T10:00:05.675Z", "SigningCertURL": CERT_URL,
    }
    message.update(fields)
    return message


@pytest.fixture
def aws_host(http_blocked):
    """Answers only what the test tells it to (`aws_host.get(url, ...)`); records every request."""
    return http_blocked


# --- Signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_message_aws_signed_is_accepted_in_both_signature_versions(sns_signer, version):
    sns.message_verify(sns_signer.sign(notification(), version))


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_notification_without_subject_is_signed_without_it(sns_signer, version):
    message = notification()
    del message["Subject"]
    sns.message_verify(sns_signer.sign(message, version))


def test_a_subscription_confirmation_signs_its_own_keys(sns_signer):
    confirmation = payload("amazon_ses", "subscription_confirmation")
    sns.message_verify(sns_signer.sign(confirmation))
    # The Notification's keys would leave SubscribeURL and Token unsigned: not what AWS signs.
    forged = sns_signer.sign({**confirmation, "Type": "Notification"})
    with pytest.raises(sns.SignatureRefused):
        sns.message_verify({**forged, "Type": "SubscriptionConfirmation"})


@pytest.mark.parametrize("change", [
    {"Message": '{"eventType": "Bounce"}\n'}, {"MessageId": "another"}, {"Subject": "Other"}, {"Timestamp": "2026-12-01T00:00:00Z"},
    {"TopicArn": "arn:aws:sns:us-east-1:666666666666:theirs"}, {"SignatureVersion": "2"},
])
def test_a_changed_message_is_refused(sns_signer, change):
    signed = sns_signer.sign(notification(), "1")
    with pytest.raises(sns.SignatureRefused):
        sns.message_verify({**signed, **change})


@pytest.mark.parametrize("fields", [
    {"SignatureVersion": "3"}, {"SignatureVersion": None}, {"Signature": "not base64!"}, {"Signature": ""},
    {"Signature": None}, {"Type": "Surprise"},
])
def test_a_message_that_cannot_be_checked_is_refused_without_a_fetch(sns_signer, aws_host, fields):
    message = {**sns_signer.sign(notification()), **fields}
    cache.clear()
    with pytest.raises(sns.SignatureRefused):
        sns.message_verify(message)
    assert len(aws_host.calls) == 0


def test_a_signature_by_another_key_is_refused(sns_signer):
    from scheduler.tests.webhook_requests import SnsSigner

    other = SnsSigner().sign(notification(SigningCertURL=CERT_URL.replace("0000", "1111")))
    sns_signer.seed(other["SigningCertURL"])  # AWS's certificate at that address, not the signer's
    with pytest.raises(sns.SignatureRefused, match="does not match"):
        sns.message_verify(other)


@pytest.mark.parametrize("url", [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
    "https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService-0.pem",
    "https://attacker.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-0.pem",
    "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.txt",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem?x=1",
    "https://s3.amazonaws.com/SimpleNotificationService-0.pem",
    "https://sns.us-east-1.amazonaws.co/SimpleNotificationService-0.pem",
    "", None, 42,
])
def test_a_certificate_address_not_awss_is_refused_without_a_fetch(sns_signer, aws_host, url):
    message = sns_signer.sign(notification())
    with pytest.raises(sns.SignatureRefused, match="SigningCertURL"):
        sns.message_verify({**message, "SigningCertURL": url})
    assert len(aws_host.calls) == 0


@pytest.mark.parametrize("url", [
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
])
def test_every_regions_certificate_address_is_accepted(url):
    sns.signing_cert_url_check(url)


def test_the_certificate_is_fetched_once_then_kept_in_the_process_and_the_cache(sns_signer, aws_host):
    aws_host.get(CERT_URL, body=sns_signer.pem)
    message = sns_signer.sign(notification())
    cache.clear()  # the signer put it there: this time it must be fetched

    sns.message_verify(message)
    sns.message_verify({**sns_signer.sign(notification(MessageId="second")), "SigningCertURL": CERT_URL})
    assert len(aws_host.calls) == 1
    assert aws_host.calls[0].request.url == CERT_URL

    sns.certificates_forget()  # a new process: the shared cache has it
    sns.message_verify(message)
    assert len(aws_host.calls) == 1
    assert cache.get(sns.CERT_CACHE_PREFIX + CERT_URL) == sns_signer.pem


def test_with_the_cache_down_the_certificate_is_fetched_and_the_message_checked(sns_signer, aws_host, monkeypatch, caplog):
    aws_host.get(CERT_URL, body=sns_signer.pem)
    message = sns_signer.sign(notification())

    def unreachable(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get", unreachable)
    monkeypatch.setattr(cache, "set", unreachable)
    sns.message_verify(message)
    assert len(aws_host.calls) == 1
    assert "cache is unreachable" in caplog.text


@pytest.mark.parametrize("answer", [requests.ConnectTimeout("slow"), requests.ConnectionError("reset"), 500, 503, 429])
def test_aws_not_answering_makes_the_certificate_unavailable_not_refused(sns_signer, aws_host, answer):
    if isinstance(answer, int):
        aws_host.get(CERT_URL, status=answer)
    else:
        aws_host.get(CERT_URL, body=answer)
    message = sns_signer.sign(notification())
    cache.clear()
    with pytest.raises(sns.CertificateUnavailable):
        sns.message_verify(message)


@pytest.mark.parametrize("status, body", [(404, b"Not Found"), (200, b"<html>not a certificate</html>"), (301, b"")])
def test_no_certificate_at_the_address_is_refused_and_not_kept(sns_signer, aws_host, status, body):
    aws_host.get(CERT_URL, status=status, body=body)
    message = sns_signer.sign(notification())
    cache.clear()
    with pytest.raises(sns.SignatureRefused):
        sns.message_verify(message)
    assert cache.get(sns.CERT_CACHE_PREFIX + CERT_URL) is None


def test_the_fetch_has_a_short_timeout(sns_signer, monkeypatch):
    seen = {}

    def get(url, **kwargs):
        seen.update(kwargs, url=url)
        raise requests.ReadTimeout("slow")

    monkeypatch.setattr(sns.requests, "get", get)
    with pytest.raises(sns.CertificateUnavailable):
        sns.signing_certificate(CERT_URL)
    assert seen["url"] == CERT_URL and seen["allow_redirects"] is False
    assert sum(seen["timeout"]) <= 10


# --- Through the Amazon SES webhook -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_tampered_notification_is_403_and_nothing_stored(webhooks, sns_signer):
    signed = sns_signer.sign(payload("amazon_ses", "delivery") | {"Message": '{"eventType": "Delivery"}\n'})
    tampered = {**signed, "Message": json.dumps(payload("amazon_ses", "bounce_permanent")["Message"]) + "\n"}
    response = webhooks.post("amazon_ses", tampered, sign=False)
    assert response.status_code == 403
    assert not TrackingEvent.objects.exists()


@pytest.mark.django_db
def test_an_unsigned_notification_is_403(webhooks):
    unsigned = payload("amazon_ses", "delivery")
    for key in ("Signature", "SignatureVersion"):
        del unsigned[key]
    assert webhooks.post("amazon_ses", unsigned, sign=False).status_code == 403
    assert not TrackingEvent.objects.exists()


@pytest.mark.django_db
def test_a_certificate_on_another_host_is_403_without_a_fetch(webhooks, sns_signer, aws_host):
    message = payload("amazon_ses", "delivery")
    message["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService-1.pem"
    response = webhooks.post("amazon_ses", message)  # signed, and its certificate "cached" for that URL
    assert response.status_code == 403
    assert len(aws_host.calls) == 0
    assert not TrackingEvent.objects.exists()


@pytest.mark.django_db
def test_aws_certificate_host_down_is_503_so_sns_retries(webhooks, sns_signer, aws_host):
    aws_host.get(CERT_URL.replace("0000000000000000000000", "2222222222222222222222"), body=requests.ConnectTimeout("slow"))
    message = payload("amazon_ses", "delivery")
    message["SigningCertURL"] = CERT_URL.replace("0000000000000000000000", "2222222222222222222222")
    body, content_type, headers = webhooks.request("amazon_ses", message)
    cache.clear()  # not fetched before
    response = webhooks.client.post("/anymail/amazon_ses/tracking/", data=body, content_type=content_type, **AUTH, **headers)
    assert response.status_code == 503 and response["Retry-After"]
    assert not TrackingEvent.objects.exists()


@pytest.mark.django_db
def test_a_notification_without_basic_auth_is_401_before_any_fetch(webhooks, aws_host):
    response = webhooks.send("amazon_ses", "delivery", auth=None)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic")
    assert len(aws_host.calls) == 0


# --- Subscription confirmations ----------------------------------------------------------------------


CONFIRMED = """<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:us-west-2:888888888888:mooc-ses-events:2bcfbf39</SubscriptionArn></ConfirmSubscriptionResult>
  <ResponseMetadata><RequestId>7a50221f-3774-11e0-9b2d-e1b8f8fc1f8f</RequestId></ResponseMetadata>
</ConfirmSubscriptionResponse>"""
REFUSED = """<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>Invalid token</Message></Error>
  <RequestId>7a50221f-3774-11e0-9b2d-e1b8f8fc1f90</RequestId>
</ErrorResponse>"""


@pytest.fixture
def aws_sns(settings, monkeypatch, tmp_path):
    """boto3's calls to SNS, answered at botocore's last step before the network: yields the
    (url, form fields) of each; `answer` sets the (status, body) of the next ones."""
    import botocore.session
    from botocore.awsrequest import AWSResponse

    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake")
    class Calls(list):
        answer = (200, CONFIRMED)

    calls = Calls()

    def confirm(request, **kwargs):
        calls.append((request.url, {key: values[0] for key, values in parse_qs(request.body if isinstance(request.body, str) else request.body.decode()).items()}))
        status, body = calls.answer
        return AWSResponse(request.url, status, {"Content-Type": "text/xml"}, _RawAnswer(body.encode()))

    session = botocore.session.Session()
    session.register("before-send.sns.ConfirmSubscription", confirm)
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_SESSION_PARAMS": {"botocore_session": session}}
    return calls


@pytest.mark.django_db
def test_a_subscription_confirmation_answers_at_once_and_a_worker_confirms_it(webhooks, aws_sns, caplog):
    response = webhooks.send("amazon_ses", "subscription_confirmation")

    assert response.status_code == 200
    [(url, form)] = aws_sns  # the task ran (eagerly, in the suite) and called AWS once
    assert url == "https://sns.us-west-2.amazonaws.com/"  # the topic's own region
    assert form["Action"] == "ConfirmSubscription"
    assert form["TopicArn"] == "arn:aws:sns:us-west-2:888888888888:mooc-ses-events"
    assert form["Token"] == "2336412f37fb687f5d51e6e2425ba1f30"
    assert form["AuthenticateOnUnsubscribe"] == "true"
    assert "confirmed" in caplog.text
    assert not TrackingEvent.objects.exists()


@pytest.mark.django_db
def test_a_confirmation_is_not_confirmed_inside_the_request(webhooks, aws_sns, monkeypatch):
    from scheduler import tasks

    queued = []
    monkeypatch.setattr(tasks.sns_subscription_confirm, "apply_async", lambda args, **kwargs: queued.append(args))
    assert webhooks.send("amazon_ses", "subscription_confirmation").status_code == 200
    assert aws_sns == []
    [[message]] = queued
    assert message["Token"] == "2336412f37fb687f5d51e6e2425ba1f30" and message["Type"] == "SubscriptionConfirmation"


@pytest.mark.django_db
def test_a_forged_subscription_confirmation_is_403_and_confirms_nothing(webhooks, aws_sns, sns_signer):
    signed = sns_signer.sign(payload("amazon_ses", "subscription_confirmation"))
    forged = {**signed, "SubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=theirs", "Token": "theirs"}
    assert webhooks.post("amazon_ses", forged, sign=False).status_code == 403
    assert aws_sns == []


@pytest.mark.django_db
def test_without_a_webhook_secret_a_confirmation_is_refused(webhooks, aws_sns, settings):
    settings.ANYMAIL = {key: value for key, value in settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"}
    assert webhooks.send("amazon_ses", "subscription_confirmation", auth=None).status_code == 403
    assert aws_sns == []


@pytest.mark.django_db
def test_a_confirmation_that_cannot_be_queued_is_503(webhooks, aws_sns, monkeypatch, caplog):
    from scheduler import tasks

    def broker_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.sns_subscription_confirm, "apply_async", broker_down)
    response = webhooks.send("amazon_ses", "subscription_confirmation")
    assert response.status_code == 503
    assert "Action=ConfirmSubscription" in caplog.text  # what the operator needs to confirm by hand


@pytest.mark.django_db
def test_aws_refusing_the_token_is_logged_not_retried(webhooks, aws_sns, caplog):
    from scheduler.tasks import sns_subscription_confirm

    aws_sns.answer = (400, REFUSED)
    sns_subscription_confirm.apply(args=[payload("amazon_ses", "subscription_confirmation")]).get()
    assert len(aws_sns) == 1
    assert "not confirmed, AWS refused" in caplog.text


@pytest.mark.django_db
def test_aws_failing_is_retried(webhooks, aws_sns, monkeypatch):
    from celery.exceptions import Retry

    from scheduler.tasks import sns_subscription_confirm

    aws_sns.answer = (503, REFUSED.replace("InvalidParameter", "InternalError"))
    retried = []

    def retry(exc=None, countdown=None, **kwargs):
        retried.append(countdown)
        raise Retry(exc=exc)

    monkeypatch.setattr(sns_subscription_confirm, "retry", retry)
    with pytest.raises(Retry):
        sns_subscription_confirm.apply(args=[payload("amazon_ses", "subscription_confirmation")], throw=True).get()
    assert retried == [60]
    assert len(aws_sns) >= 1  # botocore's own retries of a 503 happen before ours
