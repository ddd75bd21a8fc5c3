"""Every ESP the README names takes a real weekly email: a scheduler pass sends it through that
ESP's own Anymail backend, and only the HTTP call is intercepted, answered with the success
body the ESP really returns (the ones Anymail's own tests use).

Each test reads back what the ESP received (recipient, subject, both bodies, List-Unsubscribe
headers, metadata, the one tag) and checks the ledger row: SENT, with the provider's id.
"""

import re

import pytest
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView

from cohorts.models import Cohort, Course
from scheduler.models import Delivery, EmailKind
from scheduler.tracking import delivery_metadata, delivery_tag
from signups.models import Learner
from signups.services import learner_links, list_unsubscribe_headers

from scheduler.tests.esps import ESPS, esp_use, intercepted
from scheduler.tests.helpers import BEFORE_START, START, at, learner_in, run_pass, weekly

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.clock(BEFORE_START),
    # Anymail no longer officially supports SendGrid and says so whenever its backend starts (README).
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
]

RECIPIENT = "zoe@example.org"


@pytest.fixture(params=ESPS, ids=[esp.name for esp in ESPS])
def esp(request, provider, settings, monkeypatch, tmp_path):
    """The ESP's backend and settings, in place of the test provider (and its unlimited rate) set up before."""
    return esp_use(request.param, settings, monkeypatch, tmp_path)


def test_each_esp_takes_the_weekly_email(cohort, esp, settings):
    enrollment = learner_in(cohort, email=RECIPIENT, learner__first_name="Zoë")
    learner = enrollment.learner

    with intercepted(esp, settings, esp.answer.replace("{to}", RECIPIENT)) as calls:
        run_pass(at(START, 10))

    row = weekly(cohort, 1).get()
    # Anything Anymail raised would have left the row PENDING or FAILED, with the error as its reason.
    assert (row.status, row.reason, row.attempts) == (Delivery.Status.SENT, "", 1)
    [(url, body)] = calls
    assert url == esp.url
    sent = esp.read(body)
    assert row.provider_message_id == (esp.message_id or sent.message_id_sent)
    assert sent.to == [RECIPIENT]
    assert sent.subject == f"We begin: week 1 of {cohort.course.title}"
    links = learner_links(learner)
    switch, unsubscribe = links["switch"], links["unsubscribe"]
    assert sent.text.startswith("Hello Zoë,\n\nToday we begin!") and f"Drop back to the next round: {switch}" in sent.text
    assert "<p style=\"margin:0 0 16px;\">Hello Zoë,</p>" in sent.html and f'href="{unsubscribe}"' in sent.html
    for name, value in list_unsubscribe_headers(unsubscribe).items():
        assert sent.headers[name] == value
    assert sent.metadata == {
        "delivery": str(row.pk), "learner": str(learner.public_id), "course": "gentle-python", "cohort": "winter",
        "kind": "week", "week": "1",
    }
    assert sent.tags == ["gentle-python-week-1"]


# --- Within every ESP's limits, whatever the course -------------------------------------------------


@pytest.mark.parametrize("kind", list(EmailKind))
def test_the_tag_fits_every_esp_even_for_the_longest_course_slug(kind):
    longest = "a" * Course._meta.get_field("slug").max_length
    week_number = 12 if kind == EmailKind.WEEK else 0

    tag = delivery_tag(longest, kind, week_number)

    # SparkPost's campaign_id takes 64 characters; SES Message Tags and Resend's tags only these.
    assert len(tag) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", tag)
    assert tag.endswith(f"-{kind}-12" if kind == EmailKind.WEEK else f"-{kind}")  # what it names survives the cut


def test_the_metadata_fits_every_esp_even_for_the_longest_slugs():
    course = Course(slug="c" * Course._meta.get_field("slug").max_length)
    cohort = Cohort(course=course, slug="r" * Cohort._meta.get_field("slug").max_length)
    row = Delivery(pk=2**31, learner=Learner(), cohort=cohort, kind=EmailKind.GROUP_INTRO, week_number=0)

    metadata = delivery_metadata(row)

    # Postmark: at most 10 fields, names of 20 characters, values of 80; SendGrid: strings only;
    # Brevo: ASCII only. SendGrid's events and Mailgun's legacy webhooks mix their own fields
    # with the metadata, so a key named like one of theirs would not come back.
    their_fields = SendGridTrackingWebhookView.sendgrid_event_keys | {"body-plain", "h", "message-headers", "message-id", "tag"}
    assert len(metadata) <= 10
    assert all(len(key) <= 20 and key not in their_fields for key in metadata)
    assert all(isinstance(value, str) and value.isascii() and len(value) <= 80 for value in metadata.values())
    assert metadata["delivery"] == str(2**31) and metadata["learner"] == str(row.learner.public_id)
