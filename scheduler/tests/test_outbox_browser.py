"""The development outbox in a real browser (Debian's chromium), on a phone and a laptop: the list
and a message fit the width, the email's HTML frame is as tall as the email, nothing breaks the CSP."""

import datetime
from pathlib import Path

import pytest
from django.core.mail import EmailMultiAlternatives

from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from scheduler.outbox import outbox_messages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
# Much taller than any screen, as a week's email is; in a 600 px column, as emails are laid out.
LONG_HTML = '<div style="max-width:600px;margin:0 auto;font-family:sans-serif">' + "".join(
    f"<p>Paragraph {number}: read the chapter, then try the exercises with your group.</p>" for number in range(1, 61)
) + "<p>The last line of the email.</p></div>"


@pytest.fixture
def outbox_with_mail(settings, tmp_path, clock):
    settings.DEBUG = True
    settings.EMAIL_BACKEND = "scheduler.outbox.OutboxEmailBackend"
    settings.EMAIL_OUTBOX_DIR = tmp_path / "outbox"
    for number in range(1, 4):
        clock.shift(datetime.timedelta(seconds=1))
        message = EmailMultiAlternatives(
            subject=f"Week {number}: a subject long enough to wrap on a phone, as the course's subjects often are",
            body="Hello Ada,\n\nThis week: https://ocw.mit.edu/lecture-2\n",
            from_email="Mechanical MOOC <mooc@example.org>",
            to=[f"maximiliana.alexandrina.{number}@a-long-domain-name.example.org"],
        )
        message.attach_alternative(LONG_HTML, "text/html")
        message.send()
    return outbox_messages()


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_outbox_and_a_message_fit_and_the_email_is_shown_whole(page_at, live_server, outbox_with_mail, width):
    page = page_at(width)
    violations = csp_violations(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{live_server.url}/dev/outbox/?q=week")
    page.get_by_role("link", name="Week 3:", exact=False).wait_for()
    assert fits_width(page), f"the outbox list is wider than {width} px"
    page.screenshot(path=SCREENSHOTS / f"outbox-list-{width}.png", full_page=True)

    page.get_by_role("link", name="Week 3:", exact=False).click()
    frame = page.locator("iframe.email-frame")
    frame.content_frame.get_by_text("The last line of the email.").wait_for()
    # The frame grows to the email (static/js/email_frame.js): nothing scrolls inside it.
    page.wait_for_function(
        "() => { const f = document.querySelector('iframe.email-frame'); const h = f.contentDocument.documentElement;"
        " return h.scrollHeight <= f.clientHeight + 1 && f.clientHeight > window.innerHeight; }"
    )
    box = frame.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width
    assert fits_width(page), f"the message page is wider than {width} px"
    page.screenshot(path=SCREENSHOTS / f"outbox-message-{width}.png", full_page=True)
    assert violations == []
