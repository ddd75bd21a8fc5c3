"""A group's page and its mute page in a real browser (Debian's chromium through Playwright), on a
phone and a laptop: they fit, the site's policy refuses nothing, and a member mutes and undoes it."""

import datetime

import pytest

from groupmail.models import GroupMailMute, GroupMessage
from groupmail.relay import mute_url
from groupmail.tests.conftest import IN_WEEK_1
from mooc.testing.accessibility import axe_violations
from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from scheduler.selectors import group_page_url
from signups.models import Learner
from signups.services import learner_links

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.clock(IN_WEEK_1)]

LONG_LINK = "https://a-rather-long-address.example.org/questions/12345/why-does-my-for-loop-print-everything-twice?answer=yes"


@pytest.fixture
def bob(study_group, live_server, settings, clock):
    """Bob, a member of Group 3, whose archive holds a few messages with long lines in them."""
    settings.SITE_URL = live_server.url
    ada = Learner.objects.get(email="ada@example.org")
    for n, (subject, body) in enumerate([
        ("Week 1 exercises", "Hello all,\nhere is what I found:\n" + LONG_LINK + "\n\nAda"),
        ("A-very-long-subject-without-any-spaces-that-a-phone-has-to-wrap-somewhere-or-other", "Short one."),
    ]):
        GroupMessage.objects.create(
            group=study_group, sender=ada, status=GroupMessage.Status.RELAYED, subject=subject, raw=b"", body_text=body,
            size=len(body), received_at=clock.now() - datetime.timedelta(hours=n),
        )
    return Learner.objects.get(email="bob@example.org")


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_group_page_fits_and_a_member_mutes_and_undoes_it(page_at, study_group, bob, width):
    page = page_at(width)
    violations = csp_violations(page)

    page.goto(group_page_url(learner_links(bob), study_group.slug))

    page.get_by_role("heading", name="Group 3", exact=True).wait_for()
    assert page.get_by_role("link", name="Write to your group").get_attribute("href") == "mailto:winter-3@groups.example.org"
    assert page.locator("#members").get_by_text("Bob (Europe/Lisbon): you").is_visible()
    assert page.get_by_role("heading", name="Week 1 exercises").is_visible()
    assert page.get_by_text(LONG_LINK).is_visible()
    assert fits_width(page)
    assert axe_violations(page) == []

    page.get_by_role("button", name="Mute this group’s mail").click()
    page.get_by_role("heading", name="Group 3’s mail is muted").wait_for()
    assert GroupMailMute.objects.filter(learner=bob, group=study_group, kind=GroupMailMute.Kind.RECEIVING).exists()
    assert fits_width(page)

    page.get_by_role("button", name="Undo: get the group’s messages again").click()
    page.get_by_text("Done: you get Group 3’s messages by email again.").wait_for()
    assert not GroupMailMute.objects.exists()
    assert page.get_by_role("button", name="Mute this group’s mail").is_visible()
    assert fits_width(page)
    assert violations == []


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_mute_link_from_an_email_asks_first_and_fits(page_at, study_group, bob, width):
    page = page_at(width)
    violations = csp_violations(page)

    page.goto(mute_url(learner_links(bob), study_group.slug))

    page.get_by_role("heading", name="Mute Group 3’s mail").wait_for()
    assert not GroupMailMute.objects.exists()  # opening the link changes nothing
    assert fits_width(page)
    page.get_by_role("button", name="Mute the group’s mail").click()
    page.get_by_role("heading", name="Group 3’s mail is muted").wait_for()
    assert GroupMailMute.objects.filter(learner=bob).count() == 1
    page.get_by_role("link", name="Go to Group 3’s page").click()
    page.get_by_text("You have muted this group’s mail").wait_for()
    assert fits_width(page)
    assert violations == []
