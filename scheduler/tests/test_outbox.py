"""In development every email lands in var/outbox/ as an .eml file, readable at /dev/outbox/."""

import datetime
import email
import email.policy

import pytest
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse

from scheduler import outbox as outbox_module
from scheduler.outbox import outbox_messages, outbox_page


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
    assert 'sandbox="allow-same-origin" srcdoc="&lt;p&gt;Hello &lt;strong&gt;Ada&lt;/strong&gt;' in detail
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


def send_numbered(clock, count, to="ada@example.org", subject="Week {}"):
    """`count` messages, a second apart on the test's clock, so their order is the clock's."""
    for number in range(1, count + 1):
        clock.shift(datetime.timedelta(seconds=1))
        send_week_email(to=to.format(number), subject=subject.format(number))


def test_the_outbox_pages_newest_first_with_next_and_previous_links(client, outbox, settings, clock, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setattr(outbox_module, "OUTBOX_PAGE_SIZE", 3)
    send_numbered(clock, 7)
    url = reverse("scheduler:outbox-list")

    first = client.get(url)
    second = client.get(url, {"page": 2})
    last = client.get(url, {"page": 3})

    assert [message.subject for message in first.context["messages_in_outbox"]] == ["Week 7", "Week 6", "Week 5"]
    page = first.content.decode()
    assert 'rel="next" href="?page=2"' in page and 'rel="prev"' not in page
    assert [message.subject for message in second.context["messages_in_outbox"]] == ["Week 4", "Week 3", "Week 2"]
    page = second.content.decode()
    assert 'rel="prev" href="?page=1"' in page and 'rel="next" href="?page=3"' in page
    assert [message.subject for message in last.context["messages_in_outbox"]] == ["Week 1"]
    assert 'rel="next"' not in last.content.decode()


def test_a_page_of_fifty_and_a_page_number_that_is_not_one(client, outbox, settings, clock):
    settings.DEBUG = True
    send_numbered(clock, 51)

    assert len(outbox_page(1).messages) == 50 and outbox_page(1).has_next
    assert [message.subject for message in outbox_page(2).messages] == ["Week 1"]
    assert client.get(reverse("scheduler:outbox-list"), {"page": "x"}).context["page"].number == 1


def test_the_search_finds_a_recipient_or_a_subject_in_any_case(client, outbox, settings, clock):
    settings.DEBUG = True
    send_numbered(clock, 2, to="ada{}@example.org", subject="Week {}: loops")
    send_week_email(to="grace@example.org", subject="Welcome, GRACE")
    url = reverse("scheduler:outbox-list")

    by_recipient = client.get(url, {"q": "ADA2@"}).context["messages_in_outbox"]
    by_subject = client.get(url, {"q": "Loops"}).context["messages_in_outbox"]
    either = client.get(url, {"q": "grace"})
    nothing = client.get(url, {"q": "hedy"}).content.decode()

    assert [message.to for message in by_recipient] == ["ada2@example.org"]
    assert [message.subject for message in by_subject] == ["Week 2: loops", "Week 1: loops"]
    assert [message.subject for message in either.context["messages_in_outbox"]] == ["Welcome, GRACE"]
    assert 'value="grace"' in either.content.decode()
    assert "No message has a recipient or subject containing “hedy”." in nothing


def test_a_search_pages_its_matches_and_keeps_its_query_in_the_links(client, outbox, settings, clock, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setattr(outbox_module, "OUTBOX_PAGE_SIZE", 2)
    send_numbered(clock, 5, subject="Week {}: loops")
    clock.shift(datetime.timedelta(seconds=1))
    send_week_email(subject="Something else")

    first = outbox_page(1, "LOOPS")
    last = outbox_page(3, "LOOPS")
    page = client.get(reverse("scheduler:outbox-list"), {"q": "loops & more", "page": 2}).content.decode()

    assert [message.subject for message in first.messages] == ["Week 5: loops", "Week 4: loops"] and first.has_next
    assert [message.subject for message in last.messages] == ["Week 1: loops"] and not last.has_next
    assert 'href="?q=loops%20%26%20more&amp;page=1"' in page


def test_the_list_reads_headers_only(outbox, clock, monkeypatch):
    send_numbered(clock, 3)
    monkeypatch.setattr(email, "message_from_bytes", lambda *args, **kwargs: pytest.fail("a whole message was parsed"))

    assert [message.subject for message in outbox_page(1, "week").messages] == ["Week 3", "Week 2", "Week 1"]
