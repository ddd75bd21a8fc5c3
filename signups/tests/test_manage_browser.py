"""The learner's own page in a real browser, on a phone and a laptop: it fits, and their group is there."""

import re

import pytest

from mooc.testing.fixtures import DESKTOP_WIDTH, PHONE_WIDTH, csp_violations, fits_width
from signups.groups import cohort_groups_form
from signups.services import learner_links
from signups.tests.factories import EnrollmentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# Midday UTC: the learners' own date (Buenos Aires) is the site's, so the round is in its week 3.
@pytest.mark.clock("2026-11-24T12:00:00Z")
@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_the_page_shows_the_group_and_fits_on_a_phone_and_a_laptop(page_at, live_server, settings, running_cohort, clock, width):
    settings.SITE_URL = live_server.url
    running_cohort.discussion_url_pattern = "https://a-rather-long-forum-address.example.org/c/mechanical-mooc/{group}"
    running_cohort.save()
    hedy = EnrollmentFactory(
        cohort=running_cohort, learner__first_name="Hedy", learner__timezone="America/Argentina/Buenos_Aires",
        learner__email="a.rather.long.address.for.a.small.screen@example.org",
    )
    for name in ["Ada", "Grace", "Bartholomew-Maximilian", "Joan", "Alan"]:
        EnrollmentFactory(cohort=running_cohort, learner__first_name=name, learner__timezone="America/Argentina/ComodRivadavia")
    cohort_groups_form(running_cohort, now=clock.now())

    page = page_at(width)
    violations = csp_violations(page)
    page.goto(learner_links(hedy.learner)["manage"])

    page.get_by_role("heading", name="Your enrollment").wait_for()
    assert page.get_by_text("Week 3 of 8").is_visible()
    group = page.locator("#group")
    group.scroll_into_view_if_needed()
    assert group.get_by_role("heading", name="Your study group").is_visible()
    assert group.get_by_text("Group 1", exact=False).first.is_visible()
    assert group.get_by_text("Bartholomew-Maximilian").is_visible()
    link = group.get_by_role("link", name="Go to Group 1’s discussion")
    assert link.is_visible()
    box = link.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= width
    assert page.locator("#next").get_by_text(re.compile(r"Week \d+’s email (arrives on|is due today)")).is_visible()
    assert fits_width(page)
    assert violations == []


@pytest.mark.parametrize("width", [PHONE_WIDTH, DESKTOP_WIDTH])
def test_a_bounced_learner_fixes_their_address_from_their_page_and_the_link(page_at, live_server, settings, tmp_path, running_cohort, clock, width):
    """On a phone and a laptop: the page says the address bounced, the fix form sends a link to
    the new address (the development outbox), and only the button behind it changes the address."""
    import email
    import email.policy

    from signups.models import Learner, Suppression
    from signups.suppressions import learner_mail_stop

    settings.SITE_URL = live_server.url
    settings.EMAIL_BACKEND = "scheduler.outbox.OutboxEmailBackend"
    settings.EMAIL_OUTBOX_DIR = outbox = tmp_path / "outbox"
    old, new = "a.rather.long.address.that.bounced@old-mailbox.example.org", "hedy.new.address@new-mailbox.example.org"
    hedy = EnrollmentFactory(cohort=running_cohort, learner__first_name="Hedy", learner__email=old).learner
    learner_mail_stop(hedy.pk, Suppression.Reason.BOUNCED, clock.now())

    page = page_at(width)
    violations = csp_violations(page)
    page.goto(learner_links(hedy)["manage"])
    mail_section = page.locator("#mail")
    mail_section.get_by_text(f"Emails to {old} bounced on", exact=False).wait_for()
    assert page.get_by_role("heading", name="Fix your address").is_visible()
    assert fits_width(page)

    page.get_by_label("Your email address").fill(new)
    page.get_by_role("button", name="Fix my address").click()
    page.get_by_text(f"We have sent a link to {new}", exact=False).first.wait_for()
    assert fits_width(page)

    [message] = [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in outbox.glob("*.eml")]
    assert message["To"] == new
    link = re.search(r"http://\S+/address/\S+/", message.get_body(preferencelist=("plain",)).get_content()).group(0)
    page.goto(link)
    page.get_by_role("heading", name="Use your new address").wait_for()
    assert Learner.objects.get(pk=hedy.pk).email == old  # opening the link changes nothing
    assert fits_width(page)
    page.get_by_role("button", name="Use this address").click()
    page.get_by_role("heading", name="Your address is changed").wait_for()
    assert page.get_by_text("We've told the organizers; they will restart your emails.").is_visible()
    assert fits_width(page)

    learner = Learner.objects.get(pk=hedy.pk)
    assert learner.email == new and learner.address_fixed_at is not None and learner.is_unsubscribed
    assert violations == []
