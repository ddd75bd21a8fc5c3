"""A stuck learner's check-in page offers to tell their group (signups/checkins.py): with their
consent, a short message from them goes through group mail's own door, screened and relayed like
any member's message, once per learner and week (groupmail.services.group_message_on_behalf)."""

import pytest
from django.core import mail

from groupmail.models import GroupMessage, InboundMessage
from groupmail.services import group_mail_close, member_mute
from groupmail.tests.conftest import DOMAIN, IN_WEEK_1
from signups.checkins import checkin_links
from signups.models import CheckIn, Learner

pytestmark = [pytest.mark.django_db, pytest.mark.clock(IN_WEEK_1)]


def path(learner, answer: str = "stuck", week: int = 1) -> str:
    url = checkin_links(learner.public_id, learner.enrollments.get().cohort_id, week)[f"checkin_{answer}"]
    return url.removeprefix("http://testserver")


def tell_path(learner, week: int = 1) -> str:
    return path(learner, week=week).removesuffix("stuck/") + "tell-group/"


def copies() -> dict:
    return {message.to[0]: message for message in mail.outbox if message.extra_headers.get("List-Id")}


def test_a_stuck_learner_tells_their_group_once_relayed_like_any_members_message(client, study_group):
    ada = Learner.objects.get(email="ada@example.org")

    stuck = client.post(path(ada)).content.decode()
    assert "Tell Group 3?" in stuck and ">Tell my group</button>" in stuck
    assert not copies()  # answering "stuck" tells nobody by itself

    told = client.post(tell_path(ada), {"note": "Where does the print go in exercise 1.10?"})

    assert told.status_code == 200
    assert "Done: we sent your message to Group 3." in told.content.decode()
    assert sorted(copies()) == ["bob@example.org", "cy@example.org", "dee@example.org"]
    copy = copies()["bob@example.org"]
    assert copy.subject == "[Group 3] Stuck on week 1: First programs, values and variables"
    assert "I'm stuck on week 1 (First programs, values and variables) and could use a hand." in copy.body
    assert "Where does the print go in exercise 1.10?" in copy.body
    assert copy.reply_to == [f"winter-3@{DOMAIN}", "Ada <ada@example.org>"]  # answers reach the group, or Ada alone
    inbound = InboundMessage.objects.get()
    assert inbound.esp == "checkin" and inbound.status == InboundMessage.Status.RELAYED
    entry = GroupMessage.objects.get()
    assert entry.sender == ada and entry.status == GroupMessage.Status.RELAYED  # on the group's page, as Ada's
    checkin = CheckIn.objects.get(learner=ada)
    assert checkin.group_told_at is not None

    again = client.post(tell_path(ada), {"note": "Still stuck!"})

    assert again.status_code == 200 and "We told Group 3 already" in again.content.decode()
    assert len(copies()) == 3 and GroupMessage.objects.count() == 1 and InboundMessage.objects.count() == 1
    assert "Tell my group" not in client.post(path(ada)).content.decode()  # told: the offer is gone


def test_the_same_message_handed_over_twice_is_stored_once(study_group, clock):
    """Two presses at once both pass the "told already?" check: group mail's dedupe keeps one."""
    from signups.checkins import MessageOnBehalf
    from groupmail.services import group_message_on_behalf

    message = MessageOnBehalf(group_id=study_group.pk, group_slug=study_group.slug, learner_email="ada@example.org",
                              learner_first_name="Ada", subject="Stuck on week 1", text="Hi all\n",
                              message_id="<checkin.1.1.x@testserver>")

    assert group_message_on_behalf(message, clock.now()) and group_message_on_behalf(message, clock.now())

    assert InboundMessage.objects.count() == 1 and len(copies()) == 3


def test_only_a_stuck_answer_tells_the_group(client, study_group):
    ada = Learner.objects.get(email="ada@example.org")
    client.post(path(ada, "done"))

    refused = client.post(tell_path(ada))

    assert refused.status_code == 409 and "Nothing was sent" in refused.content.decode()
    assert not copies() and InboundMessage.objects.count() == 0
    assert CheckIn.objects.get(learner=ada).group_told_at is None


def test_a_closed_groups_mail_tells_nobody_and_marks_nothing(client, study_group, clock):
    ada = Learner.objects.get(email="ada@example.org")
    group_mail_close(study_group.pk, clock.now())
    client.post(path(ada))

    refused = client.post(tell_path(ada))

    assert refused.status_code == 409 and "Your group’s mail is closed" in refused.content.decode()
    assert InboundMessage.objects.count() == 0 and not mail.outbox  # not even a refusal notice to Ada
    assert CheckIn.objects.get(learner=ada).group_told_at is None


def test_a_muted_senders_message_is_held_like_any_other(client, study_group, clock):
    """The check-in is no way around an organizer's mute: the message waits for them."""
    ada = Learner.objects.get(email="ada@example.org")
    member_mute(study_group.pk, ada.pk, "posting", clock.now())
    client.post(path(ada))

    client.post(tell_path(ada))

    assert GroupMessage.objects.get().status == GroupMessage.Status.HELD and not copies()


def test_without_group_mail_the_page_says_where_to_ask(client, study_group, settings):
    settings.GROUP_MAIL_DOMAIN = ""
    ada = Learner.objects.get(email="ada@example.org")

    page = client.post(path(ada)).content.decode()

    assert "Tell my group" not in page and "Group 3’s page</a> shows who is in it: ask them there" in page
    refused = client.post(tell_path(ada))
    assert refused.status_code == 409 and InboundMessage.objects.count() == 0
