"""In development every email lands in var/outbox/ as an .eml file, readable at /dev/outbox/."""

import email
import email.policy

import pytest
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse

from scheduler.outbox import outbox_messages


@pytest.fixture
def outbox(settings, tmp_path):
    settings.EMAIL_BACKEND = "scheduler.outbox.OutboxEmailBackend"
    settings.EMAIL_OUTBOX_DIR = tmp_path / "outbox"
    return settings.EMAIL_OUTBOX_DIR


def send_week_email(to="ada@example.org", subject="Week 1: First programs"):
    message = EmailMultiAlternatives(
        subject=subject,
        body="Hello Ada,\n\nThis week: https://ocw.mit.edu/lecture-2\n",
        from_email="Mechanical MOOC <mooc@example.org>",
        to=[to],
        headers={"List-Unsubscribe": "<https://mooc.example.org/unsubscribe/abc/>"},
    )
    message.attach_alternative("<p>Hello <strong>Ada</strong></p><script>alert('x')</script>", "text/html")
    return message.send()


def test_each_message_is_a_standard_eml_file(outbox):
    assert send_week_email() == 1

    [path] = outbox.glob("*.eml")
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Week 1: First programs"
    assert parsed["To"] == "ada@example.org"
    assert parsed["List-Unsubscribe"] == "<https://mooc.example.org/unsubscribe/abc/>"
    assert "Hello Ada" in parsed.get_body(preferencelist=("plain",)).get_content()
    assert "<strong>Ada</strong>" in parsed.get_body(preferencelist=("html",)).get_content()
    assert not list(outbox.glob(".*.partial"))


def test_messages_are_listed_newest_first(outbox):
    for number in (1, 2, 3):
        send_week_email(subject=f"Week {number}")

    assert [message.subject for message in outbox_messages()] == ["Week 3", "Week 2", "Week 1"]


def test_the_outbox_page_lists_and_shows_messages_as_a_learner_sees_them(client, outbox, settings):
    settings.DEBUG = True
    send_week_email(subject="Week 1: First programs")
    send_week_email(subject="Week 2: Loops & <tags>")

    listing = client.get(reverse("scheduler:outbox-list")).content.decode()
    assert listing.index("Week 2: Loops &amp; &lt;tags&gt;") < listing.index("Week 1: First programs")

    name = outbox_messages()[1].name
    detail = client.get(reverse("scheduler:outbox-detail", args=[name])).content.decode()
    assert "<h1>Week 1: First programs</h1>" in detail
    assert "Hello Ada," in detail  # the text part
    # The HTML part is shown in a sandboxed frame, escaped into its srcdoc: it cannot run here.
    assert 'sandbox srcdoc="&lt;p&gt;Hello &lt;strong&gt;Ada&lt;/strong&gt;' in detail
    assert "<script>alert" not in detail
    assert "List-Unsubscribe" in detail

    raw = client.get(reverse("scheduler:outbox-raw", args=[name]))
    assert raw["Content-Type"] == "message/rfc822"
    assert b"Subject: Week 1: First programs" in b"".join(raw.streaming_content)


def test_an_empty_outbox_says_so(client, outbox, settings):
    settings.DEBUG = True
    assert "The outbox is empty" in client.get(reverse("scheduler:outbox-list")).content.decode()


def test_the_outbox_does_not_exist_in_production(client, outbox, settings):
    settings.DEBUG = False
    send_week_email()
    name = outbox_messages()[0].name

    assert client.get(reverse("scheduler:outbox-list")).status_code == 404
    assert client.get(reverse("scheduler:outbox-detail", args=[name])).status_code == 404


@pytest.mark.parametrize("name", ["..%2F..%2Fsettings.py", "nope.eml", "20261121T000000.000000Z-0123456789ab.eml"])
def test_names_that_are_not_messages_are_not_found(client, outbox, settings, name):
    settings.DEBUG = True
    send_week_email()
    assert client.get(f"/dev/outbox/{name}/").status_code == 404
    assert client.get(f"/dev/outbox/{name}/raw/").status_code == 404
