"""A group's page and muting its mail, under the member's own signed link: what members see,
what everybody else gets (the bad-link page), and what a mail scanner's GET changes (nothing)."""

import datetime
import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from cohorts.models import StudyGroup
from groupmail.inbound import inbound_receive
from groupmail.models import GroupMailMute, GroupMessage
from groupmail.relay import mute_url
from groupmail.selectors import MESSAGES_PER_PAGE
from groupmail.services import group_mail_close, member_mute
from groupmail.tests.conftest import IN_WEEK_1
from groupmail.tests.messages import raw_message
from scheduler.models import Delivery, EmailKind
from scheduler.selectors import group_page_url
from scheduler.sending import deliveries_send
from scheduler.tests.helpers import run_pass
from signups.models import Enrollment, Learner
from signups.services import learner_erase, learner_links
from signups.tests.factories import EnrollmentFactory
from signups.tokens import learner_token

pytestmark = [pytest.mark.django_db, pytest.mark.clock(IN_WEEK_1)]

RECEIVING = GroupMailMute.Kind.RECEIVING
SITE = "http://testserver"


def member(group, name: str) -> Learner:
    return Learner.objects.get(email=f"{name}@example.org")


def page_path(learner, group) -> str:
    return group_page_url(learner_links(learner), group.slug).removeprefix(SITE)


def mute_path(learner, group) -> str:
    return mute_url(learner_links(learner), group.slug).removeprefix(SITE)


def post_to_group(clock, sender="Ada Lovelace <ada@example.org>", **fields) -> GroupMessage:
    """A member's message, received and relayed as the real way in does."""
    inbound_receive(raw_message(sender=sender, **fields), esp="test", now=clock.now(), envelope_recipients=["winter-3@groups.example.org"])
    return GroupMessage.objects.order_by("-pk").first()


def words(page: str) -> str:
    """The page's words, tags dropped and spaces collapsed ("<span>(x)</span>: you" reads "(x): you")."""
    return re.sub(r" ([:;,.])", r"\1", " ".join(re.sub(r"<[^>]+>", " ", page).split()))


# --- The links in the emails lead here ---------------------------------------------------------


def test_the_emails_links_and_the_pages_urls_are_the_same(study_group):
    ada = member(study_group, "ada")
    token = learner_token(ada.public_id)

    assert group_page_url(learner_links(ada), study_group.slug) == SITE + reverse("groupmail:group", args=[token, study_group.slug])
    assert mute_url(learner_links(ada), study_group.slug) == SITE + reverse("groupmail:group-mute", args=[token, study_group.slug])
    assert reverse("groupmail:group-unmute", args=[token, study_group.slug]) == page_path(ada, study_group) + "unmute/"


def test_the_weekly_emails_group_link_is_the_groups_page_and_it_opens(study_group, client, clock):
    """The round has no discussion link pattern: the weekly email's group link is the page here."""
    assert study_group.discussion_url == ""
    run_pass(clock.now())  # week 1 is due (Monday 09:00 in Lisbon, two days ago)

    [week_1] = [message for message in mail.outbox if message.to == ["bob@example.org"] and "week 1" in message.subject]
    link = re.search(r"Everything said so far is on your group's page: (\S+?)\.\s", week_1.body).group(1)
    assert link == group_page_url(learner_links(member(study_group, "bob")), study_group.slug)

    response = client.get(link.removeprefix(SITE))
    assert response.status_code == 200
    assert "<h1>Group 3</h1>" in response.content.decode()


# --- What a member sees --------------------------------------------------------------------------


def test_a_member_sees_the_group_its_members_and_address_never_anyones_email(study_group, client):
    response = client.get(page_path(member(study_group, "bob"), study_group))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    text = words(page)
    assert "Your study group in A Gentle Introduction to Python, Winter round." in text
    assert "Email winter-3@groups.example.org from the address you signed up with" in text
    assert '<a class="button" href="mailto:winter-3@groups.example.org">Write to your group</a>' in page
    assert "Ada (Europe/Lisbon) Bob (Europe/Lisbon): you Cy (Europe/Lisbon) Dee (Europe/Lisbon)" in text
    for name in ("ada", "bob", "cy", "dee"):
        assert f"{name}@example.org" not in page
    assert "No messages yet." in text
    assert "Every message to the group reaches your inbox too." in text
    assert f'action="{mute_path(member(study_group, "bob"), study_group)}"' in page


def test_the_archive_newest_first_in_the_viewers_time_zone_escaped_with_its_line_breaks(study_group, client, clock):
    Learner.objects.filter(email="bob@example.org").update(timezone="America/New_York")
    post_to_group(clock, subject="First", body="Hello all.\nLine two <b>not bold</b>\n")
    clock.shift(datetime.timedelta(hours=3))
    post_to_group(clock, sender="Cy <cy@example.org>", subject="Second", body="<script>alert(1)</script>\n")

    page = client.get(page_path(member(study_group, "bob"), study_group)).content.decode()

    assert page.index("Second") < page.index("First")
    # 12:00 and 15:00 UTC are 07:00 and 10:00 in New York.
    assert "From Ada, <time datetime=\"2026-12-02T07:00-0500\">Wednesday 2 December 2026, 07:00</time>" in page
    assert "From Cy, <time datetime=\"2026-12-02T10:00-0500\">Wednesday 2 December 2026, 10:00</time>" in page
    assert "Times in your time zone (America/New_York)." in page
    assert '<div class="message-text">Hello all.\nLine two &lt;b&gt;not bold&lt;/b&gt;\n</div>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "ada@example.org" not in page and "cy@example.org" not in page


def test_held_and_discarded_messages_are_not_in_the_archive(study_group, client, clock):
    relayed = post_to_group(clock, subject="Relayed one")
    GroupMessage.objects.filter(pk=relayed.pk).update(status=GroupMessage.Status.HELD, subject="Held one")
    post_to_group(clock, subject="Discarded one", message_id="<other@example.org>")
    GroupMessage.objects.filter(subject="Discarded one").update(status=GroupMessage.Status.DISCARDED)

    page = client.get(page_path(member(study_group, "bob"), study_group)).content.decode()

    assert "Held one" not in page and "Discarded one" not in page and "No messages yet." in page


def test_the_archive_comes_in_pages_at_a_fixed_number_of_queries(study_group, client, clock, django_assert_num_queries):
    bob_page = page_path(member(study_group, "bob"), study_group)
    for n in range(MESSAGES_PER_PAGE + 5):
        GroupMessage.objects.create(
            group=study_group, sender=member(study_group, "ada"), status=GroupMessage.Status.RELAYED, subject=f"Message {n:02}",
            raw=b"x" * 1000, body_text="Text", size=1000, received_at=clock.now() + datetime.timedelta(minutes=n),
        )

    # The learner, the group, its members, closed?, muted?, the count, the page of messages.
    with django_assert_num_queries(7) as queries:
        first = client.get(bob_page).content.decode()
    sql = [query["sql"] for query in queries.captured_queries]
    assert any('"body_text"' in query for query in sql) and not any('"raw"' in query for query in sql)  # never its bytes
    second = client.get(bob_page + "?page=2").content.decode()

    assert first.count('class="message-text"') == MESSAGES_PER_PAGE
    assert "Message 24" in first and "Message 05" in first and "Message 04" not in first
    assert '<a href="?page=2">Older messages</a>' in first
    assert second.count('class="message-text"') == 5 and '<a href="?page=1">Newer messages</a>' in second


def test_without_group_mail_the_page_has_no_address(study_group, client, settings):
    settings.GROUP_MAIL_DOMAIN = ""

    page = client.get(page_path(member(study_group, "bob"), study_group)).content.decode()

    assert "Write to your group</a>" not in page and "@groups.example.org" not in page
    assert "Your group cannot be written to by email on this site." in page


def test_a_closed_groups_page_says_so(study_group, client, clock):
    group_mail_close(study_group.pk, clock.now())

    page = client.get(page_path(member(study_group, "bob"), study_group)).content.decode()

    assert "The organizers have closed this group’s mail" in page and "Write to your group</a>" not in page


def test_a_paused_member_still_sees_the_page_and_is_told_the_mail_does_not_reach_them(study_group, client):
    bob = member(study_group, "bob")
    Enrollment.objects.filter(learner=bob).update(status=Enrollment.Status.PAUSED)

    response = client.get(page_path(bob, study_group))

    assert response.status_code == 200
    assert "Your emails are paused or stopped: until they start again, none of the group’s messages reach you either." in words(
        response.content.decode()
    )


# --- Everyone else: the same bad-link page -------------------------------------------------------


def _without_csrf_token(page: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)


def _other_group(study_group):
    other = StudyGroup.objects.create(cohort=study_group.cohort, number=4, name="Group 4", slug="winter-4", utc_offset_minutes=0)
    EnrollmentFactory(cohort=study_group.cohort, group=other, learner__email="eve@example.org", learner__first_name="Eve")
    return other


@pytest.mark.parametrize("suffix", ["", "mute/"])
def test_a_non_member_learns_nothing_whether_the_group_exists_or_not(study_group, suffix):
    other = _other_group(study_group)
    eve = Learner.objects.get(email="eve@example.org")
    token = learner_token(eve.public_id)

    answers = [Client().get(f"/me/{token}/group/{slug}/{suffix}") for slug in (study_group.slug, "no-such-group", other.slug)]

    not_member, nowhere, own = answers
    assert own.status_code == 200
    assert not_member.status_code == nowhere.status_code == 400
    assert _without_csrf_token(not_member.content.decode()) == _without_csrf_token(nowhere.content.decode())
    assert "This link does not work" in not_member.content.decode()
    assert "Group 3" not in not_member.content.decode()


def _left(study_group, bob):
    Enrollment.objects.filter(learner=bob).update(status=Enrollment.Status.LEFT)


def _unconfirmed(study_group, bob):
    Learner.objects.filter(pk=bob.pk).update(confirmed_at=None)


def _erased(study_group, bob):
    learner_erase(bob, today=datetime.date(2026, 12, 2))


def _moved_to_another_group(study_group, bob):
    Enrollment.objects.filter(learner=bob).update(group=_other_group(study_group))


def _group_dissolved(study_group, bob):
    StudyGroup.objects.filter(pk=study_group.pk).update(dissolved_at=datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC))


@pytest.mark.parametrize("change", [_left, _unconfirmed, _erased, _moved_to_another_group, _group_dissolved], ids=lambda change: change.__name__[1:])
def test_a_former_member_gets_the_bad_link_page_on_every_path(study_group, change):
    bob = member(study_group, "bob")
    paths = [page_path(bob, study_group), mute_path(bob, study_group)]
    change(study_group, bob)
    client = Client()

    answers = [client.get(paths[0]), client.get(paths[1]), client.post(paths[1]), client.post(paths[0] + "unmute/")]

    assert [answer.status_code for answer in answers] == [400, 400, 400, 400]
    assert all("This link does not work" in answer.content.decode() for answer in answers)
    assert not GroupMailMute.objects.exists()


@pytest.mark.parametrize("token", ["forged", "x" * 500, "a:b:c", "%00"])
def test_a_forged_or_broken_token_gets_the_bad_link_page(study_group, token):
    for path in (f"/me/{token}/group/winter-3/", f"/me/{token}/group/winter-3/mute/"):
        response = Client().get(path)
        assert response.status_code == 400 and "This link does not work" in response.content.decode()
    assert Client().post(f"/me/{token}/group/winter-3/mute/").status_code == 400


# --- Muting -------------------------------------------------------------------------------------


def test_opening_the_mute_link_only_asks(study_group):
    bob = member(study_group, "bob")
    scanner = Client()

    asked = scanner.get(mute_path(bob, study_group))

    assert scanner.head(mute_path(bob, study_group)).status_code == 200
    assert asked.status_code == 200 and "no-store" in asked["Cache-Control"]
    page = asked.content.decode()
    assert "Stop getting the messages members send to Group 3?" in page
    assert ">Mute the group’s mail</button>" in page
    assert not GroupMailMute.objects.exists()


def test_the_button_mutes_and_offers_undo_which_unmutes(study_group):
    bob = member(study_group, "bob")
    browser = Client(enforce_csrf_checks=True)
    asked = browser.get(mute_path(bob, study_group))
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', asked.content.decode()).group(1)

    muted = browser.post(mute_path(bob, study_group), {"csrfmiddlewaretoken": csrf})

    assert muted.status_code == 200
    assert GroupMailMute.objects.filter(group=study_group, learner=bob, kind=RECEIVING).exists()
    page = muted.content.decode()
    assert "Group 3’s mail is muted" in page
    undo = re.search(r'<form method="post" action="([^"]+)">', page).group(1)
    assert undo == page_path(bob, study_group) + "unmute/"
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    undone = browser.post(undo, {"csrfmiddlewaretoken": csrf}, follow=True)

    assert undone.redirect_chain == [(page_path(bob, study_group), 302)]
    assert not GroupMailMute.objects.exists()
    assert "Done: you get Group 3’s messages by email again." in undone.content.decode()
    assert "Every message to the group reaches your inbox too." in undone.content.decode()


def test_one_click_from_the_mail_provider_mutes_without_cookie_or_csrf_token(study_group):
    bob = member(study_group, "bob")
    provider = Client(enforce_csrf_checks=True)

    response = provider.post(mute_path(bob, study_group), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    again = provider.post(mute_path(bob, study_group), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")

    assert response.status_code == again.status_code == 200
    assert GroupMailMute.objects.filter(group=study_group, learner=bob, kind=RECEIVING).count() == 1
    assert "It was muted already" in again.content.decode()


def test_unmuting_needs_the_csrf_token(study_group, clock):
    bob = member(study_group, "bob")
    member_mute(study_group.pk, bob.pk, RECEIVING, clock.now())

    forged = Client(enforce_csrf_checks=True).post(page_path(bob, study_group) + "unmute/")

    assert forged.status_code == 403
    assert GroupMailMute.objects.filter(learner=bob).exists()
    assert Client().get(page_path(bob, study_group) + "unmute/").status_code == 405


def test_a_muted_member_gets_no_copies_and_their_page_offers_to_unmute(study_group, client, clock):
    bob = member(study_group, "bob")
    Client().post(mute_path(bob, study_group), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")

    post_to_group(clock)
    deliveries_send(list(Delivery.objects.filter(kind=EmailKind.GROUP_MESSAGE).values_list("pk", flat=True)), now=clock.now())

    assert sorted(message.to[0] for message in mail.outbox) == ["cy@example.org", "dee@example.org"]
    page = client.get(page_path(bob, study_group)).content.decode()
    assert "You have muted this group’s mail: its messages do not reach your inbox. You can still read them below." in words(page)
    assert f'action="{page_path(bob, study_group)}unmute/"' in page
    assert "Hello group" in page  # the archive still has it


def test_the_mute_page_of_a_muted_member_offers_undo(study_group, clock):
    bob = member(study_group, "bob")
    member_mute(study_group.pk, bob.pk, RECEIVING, clock.now())

    page = Client().get(mute_path(bob, study_group)).content.decode()

    assert "You have muted it already" in page and f'action="{page_path(bob, study_group)}unmute/"' in page


def test_a_time_zone_we_no_longer_know_shows_times_in_utc(study_group, client, clock):
    Learner.objects.filter(email="bob@example.org").update(timezone="Mars/Olympus_Mons")
    post_to_group(clock)

    page = client.get(page_path(member(study_group, "bob"), study_group)).content.decode()

    assert "Times in your time zone (UTC)." in page and "Wednesday 2 December 2026, 12:00" in page
