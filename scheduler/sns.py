"""Amazon SNS, which carries Amazon SES's tracking events to us: is a message really from AWS,
and confirming a subscription (in a worker, never inside the request).

Anymail checks the SNS headers against the body but not the message's signature (its "Future"
comment in anymail/webhooks/amazon_ses.py); basic auth alone would let anyone holding the URL
make up bounces. So every SNS message is verified here as AWS documents it
(https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):

- SigningCertURL must be https://sns.<region>.amazonaws.com[.cn]/....pem, nothing else (no port,
  no user, no other host): any other is refused before anything is fetched, so a message
  cannot make us fetch from a host of its choosing;
- the certificate is fetched from there (the only external call), then kept: in this process
  and in the shared cache, keyed by its URL (AWS names each certificate file after its key);
- SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA, over "Key\\nValue\\n" for the message
  type's keys in AWS's order (Subject only when present).

What each failure means to the webhook (scheduler/webhooks.py): SignatureRefused is 403, the
message is not AWS's; CertificateUnavailable is 503, AWS's certificate host did not answer in
time or answered 5xx: SNS retries the message later, where a 403 would have dropped a genuine
event for good.

Not checked, on purpose: the message's Timestamp (a replayed message changes nothing: events
are stored once each) and the certificate's own dates or issuer (it is trusted because it came
over TLS from AWS's host, which is what AWS's own SDK validators rely on too).
"""

import base64
import binascii
import logging
import re
import threading
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.cache import cache

logger = logging.getLogger(__name__)

# The keys each message type signs, in the order AWS concatenates them.
SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
OPTIONAL_KEYS = {"Subject"}
SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}

CERT_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?")
# SNS waits 15 s for our answer by default: the fetch must leave time to store and answer.
CERT_FETCH_TIMEOUT = (3.05, 5)  # seconds: to connect, then between bytes
CERT_MAX_BYTES = 64 * 1024
CERT_CACHE_SECONDS = 7 * 24 * 3600  # AWS publishes a new file (a new URL) for a new key
CERT_CACHE_PREFIX = "scheduler:sns-signing-cert:"
_PROCESS_CERTS_MAX = 32  # a handful of regions, a key rotation now and then

_certificates: dict[str, x509.Certificate] = {}
_certificates_lock = threading.Lock()


class SignatureRefused(Exception):
    """The message is not proved to come from AWS (answer 403)."""


class CertificateUnavailable(Exception):
    """AWS's signing certificate could not be fetched now (answer 503: SNS retries)."""


def signed_string(message: dict) -> bytes:
    """What AWS signed for this message. Raises SignatureRefused for a message type SNS does not
    send or a signed key missing."""
    keys = SIGNED_KEYS.get(message.get("Type"))
    if keys is None:
        raise SignatureRefused(f"no signature scheme for SNS message type {message.get('Type')!r}")
    parts = []
    for key in keys:
        if key not in message:
            if key in OPTIONAL_KEYS:
                continue
            raise SignatureRefused(f"the signed key {key} is missing")
        parts.append(f"{key}\n{message[key]}\n")
    return "".join(parts).encode("utf-8")


def signing_cert_url_check(url) -> None:
    """Raises SignatureRefused unless `url` is AWS's certificate address (https, an SNS host, .pem)."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        port = parts.port if parts else None
    except ValueError:
        parts = None
    if (
        parts is None or parts.scheme != "https" or port is not None or parts.username or parts.password
        or not CERT_HOST.fullmatch(parts.netloc) or not parts.path.endswith(".pem") or parts.query or parts.fragment
    ):
        raise SignatureRefused(f"SigningCertURL {url!r} is not an Amazon SNS certificate address")


def signing_certificate(url: str) -> x509.Certificate:
    """The certificate at AWS's `url` (checked first), from this process, else the shared cache,
    else fetched once and kept in both. Raises SignatureRefused (a bad address, or no certificate
    there) or CertificateUnavailable (AWS did not answer in time)."""
    signing_cert_url_check(url)
    certificate = _certificates.get(url)
    if certificate is not None:
        return certificate
    pem = _cache_get(url)
    fetched = pem is None
    if fetched:
        pem = _certificate_download(url)
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise SignatureRefused(f"{url} holds no PEM certificate") from error
    if fetched:
        _cache_set(url, pem)
    with _certificates_lock:
        if len(_certificates) >= _PROCESS_CERTS_MAX:
            _certificates.clear()
        _certificates[url] = certificate
    return certificate


def message_verify(message: dict) -> None:
    """Returns if the SNS message carries AWS's valid signature. Raises SignatureRefused, or
    CertificateUnavailable when the certificate could not be fetched (try again later). Fetches
    only from AWS's certificate hosts, at most once per certificate and process."""
    if not isinstance(message, dict):
        raise SignatureRefused("the SNS message is not a JSON object")
    hash_type = SIGNATURE_HASHES.get(str(message.get("SignatureVersion")))
    if hash_type is None:
        raise SignatureRefused(f"unknown SignatureVersion {message.get('SignatureVersion')!r}")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
    except binascii.Error as error:
        raise SignatureRefused("the Signature is not base64") from error
    if not signature:
        raise SignatureRefused("the message carries no Signature")
    text = signed_string(message)
    public_key = signing_certificate(message.get("SigningCertURL")).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SignatureRefused("the signing certificate's key is not RSA")
    try:
        public_key.verify(signature, text, padding.PKCS1v15(), hash_type())
    except InvalidSignature as error:
        raise SignatureRefused("the signature does not match the message") from error


def _certificate_download(url: str) -> bytes:
    try:
        response = requests.get(url, timeout=CERT_FETCH_TIMEOUT, allow_redirects=False)
    except requests.RequestException as error:
        raise CertificateUnavailable(f"fetching {url}: {error}") from error
    if response.status_code >= 500 or response.status_code == 429:
        raise CertificateUnavailable(f"fetching {url}: HTTP {response.status_code}")
    if response.status_code != 200:
        raise SignatureRefused(f"no certificate at {url} (HTTP {response.status_code})")
    if len(response.content) > CERT_MAX_BYTES:
        raise SignatureRefused(f"{url} is too large for a certificate")
    return response.content


# The shared cache spares each new process a fetch; it is a convenience, so when it is down
# the certificate is fetched (a warning says why).
def _cache_get(url: str) -> bytes | None:
    try:
        pem = cache.get(CERT_CACHE_PREFIX + url)
    except Exception as error:  # noqa: BLE001
        logger.warning("SNS signing certificate: the cache is unreachable (%s); fetching %s", error, url)
        return None
    return pem if isinstance(pem, bytes) else None


def _cache_set(url: str, pem: bytes) -> None:
    try:
        cache.set(CERT_CACHE_PREFIX + url, pem, timeout=CERT_CACHE_SECONDS)
    except Exception as error:  # noqa: BLE001
        logger.warning("SNS signing certificate: the cache is unreachable (%s); not kept", error)


def subscription_confirm(message: dict) -> None:
    """Confirm the SNS subscription a verified SubscriptionConfirmation asks for, through
    Anymail's own confirmation (boto3's ConfirmSubscription in the topic's region, with
    AuthenticateOnUnsubscribe, Anymail's AMAZON_SES_* boto3 settings). Confirming twice is
    harmless. Raises botocore's errors (ClientError, BotoCoreError) for the caller to retry, or
    AnymailWebhookValidationFailure when WEBHOOK_SECRET is not set (nothing proves the topic is ours)."""
    from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView

    view = AmazonSESTrackingWebhookView()
    AmazonSESTrackingWebhookView.auto_confirm_sns_subscription(view, message)


def certificates_forget() -> None:
    """Empty this process's certificates (tests; a process that must fetch again)."""
    with _certificates_lock:
        _certificates.clear()
